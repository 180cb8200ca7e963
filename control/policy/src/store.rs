//! Persistence of the performance hash table ([`crate::planners::perf_table`]) as a contract the
//! host wires: a [`TableStore`] keeps one [`StoredTable`] (JSON) per service, so a restarted
//! control plane resumes with what it learned. Planners never call a store; the schedule hands
//! the host the tables that changed after each round ([`crate::schedule`]), and the host writes
//! them. The control plane ships an embedded `redb` file and a Redis hash (for a replicated
//! control plane sharing one table, as the paper keeps its table in Redis, seed 002 §5).

use std::collections::BTreeMap;

use crate::planners::perf_table::{PerfTable, ServiceTable, StoredTable};

/// A store failure; the message names the store and the cause.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{store} store: {message}")]
    Backend {
        /// `redb`, `redis`, ...
        store: &'static str,
        message: String,
    },
    #[error("stored table for service {service:?} is not valid: {message}")]
    Decode { service: String, message: String },
    #[error("encoding table for service {service:?}: {message}")]
    Encode { service: String, message: String },
}

/// Where performance tables live between restarts.
pub trait TableStore: Send {
    /// Every stored service table.
    fn load_all(&mut self) -> Result<BTreeMap<String, StoredTable>, StoreError>;
    /// Writes the given services' tables (one atomic batch where the store allows it).
    fn save(&mut self, tables: &[(String, StoredTable)]) -> Result<(), StoreError>;
}

/// Loads every stored table into `table` (replacing what it had for those services).
pub fn restore(table: &mut PerfTable, store: &mut dyn TableStore) -> Result<usize, StoreError> {
    let all = store.load_all()?;
    let n = all.len();
    for (name, t) in all {
        table.insert(name, ServiceTable::from_stored(&t));
    }
    Ok(n)
}

/// Writes the services changed since the last save.
pub fn persist(table: &mut PerfTable, store: &mut dyn TableStore) -> Result<usize, StoreError> {
    let dirty = table.take_dirty();
    if !dirty.is_empty() {
        store.save(&dirty)?;
    }
    Ok(dirty.len())
}
