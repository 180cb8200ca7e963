//! The state every task of the server shares: config, clock, telemetry store, plan book, the
//! policies and their schedule, the actuator and what it did, and the stop flag.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use loadshift_policy::{Actuator, Objective};

use loadshift_proto::v1 as pb;
use parking_lot::Mutex;
use tokio::sync::{Notify, watch};

use loadshift_policy::{Snapshot, schedule::Round};

use super::policies::{Policies, Tables};
use crate::{
    config::ControlConfig,
    discovery::{Discovery, EndpointMap},
    plans::PlanBook,
    state::TelemetryStore,
};

/// One scale decision as the operator API lists it.
#[derive(Clone, Debug)]
pub(crate) struct DecisionRecord {
    pub record: pb::ScaleDecisionRecord,
}

/// Type of the observer [`crate::server::Builder::on_round`] installs.
pub type RoundObserver = Box<dyn FnMut(&Snapshot, &Round) + Send>;

/// Type of the source [`crate::server::Builder::snapshots`] installs.
pub type SnapshotSource = Box<dyn FnMut(Duration) -> Snapshot + Send>;

/// What an embedder installed: a snapshot source instead of the reports, an observer of rounds.
#[derive(Default)]
pub(crate) struct Hooks {
    pub snapshots: Option<SnapshotSource>,
    pub on_round: Option<RoundObserver>,
}

/// State every task of the server shares.
pub(crate) struct Shared {
    pub cfg: ControlConfig,
    /// The control clock's origin (tokio's, so tests can pause it).
    pub started: tokio::time::Instant,
    pub store: Mutex<TelemetryStore>,
    pub plans: PlanBook,
    pub policies: Mutex<Policies>,
    pub tables: Mutex<Tables>,
    /// Declared flows: name -> (entry service, end-to-end objective).
    pub flows: BTreeMap<String, (String, Option<Objective>)>,
    /// Wakes the control loop to re-read when the next task is due.
    pub wake: Notify,
    pub hooks: Mutex<Hooks>,
    pub actuator: Mutex<Box<dyn Actuator>>,
    pub decisions: Mutex<VecDeque<DecisionRecord>>,
    /// Per service, one sample per planner round, at most `windows_kept`.
    pub history: Mutex<BTreeMap<String, VecDeque<pb::ServiceSample>>>,
    pub endpoints: watch::Receiver<EndpointMap>,
    /// Kept alive for as long as the server runs: dropping a source ends its change feed.
    pub(super) _discovery: Box<dyn Discovery>,
    pub shutdown: watch::Receiver<bool>,
    pub(super) next_stream: AtomicU64,
    pub(super) next_version: AtomicU64,
}

impl Shared {
    /// Control-plane clock (the snapshot's `now`).
    pub fn now(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn stream_id(&self) -> u64 {
        self.next_stream.fetch_add(1, Ordering::Relaxed)
    }

    /// Plan versions grow across streams and across restarts: they start at the wall clock in
    /// microseconds, so a proxy never sees a version go backwards after the control plane
    /// restarts.
    pub fn plan_version(&self) -> u64 {
        self.next_version.fetch_add(1, Ordering::Relaxed)
    }
}

/// Resolves once the shared stop flag is set (or its sender is gone). The flag's read guard is
/// dropped inside, so callers in `select!` stay `Send`.
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}
