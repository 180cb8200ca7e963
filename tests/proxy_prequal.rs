//! Server-reported load in band and `prequal`, with real upstreams behind real sidecars on
//! 127.0.0.1:0: the callee's inbound sidecar reports its app's requests in flight and latency on
//! every response to a mesh caller (`loadshift-load`), the caller's sidecar keeps the latest per
//! endpoint (`/stats`) and takes the field off before its app sees it; an app never sees the
//! caller's question either; a standalone proxy keeps what its upstreams send and forwards none
//! of it, over HTTP/1.1 and HTTP/2, counting malformed ones; and `prequal` steers away from an
//! upstream whose sidecar reports many requests in flight that the caller did not send.
// Test set-up: a failed step should fail the test on the spot.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    collections::BTreeMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use common::*;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use loadshift_core::plan::{Algorithm, Plan, ServicePlan};

/// The callee's sidecar: its inbound side fronts `app` as service `web`.
fn callee(app: SocketAddr) -> loadshift_proxy::Running {
    start_proxy(&format!(
        "mode: sidecar\noutbound: {{ listen: 127.0.0.1:0 }}\nadmin: {{ listen: 127.0.0.1:0 }}\n\
         inbound: {{ listen: 127.0.0.1:0, app: \"{app}\", service: web }}\nservices: []\n"
    ))
}

/// The caller's sidecar: its outbound side routes `web` to the callees' inbound listeners, one
/// container name each.
fn caller(callees: &[(&str, &loadshift_proxy::Running)]) -> loadshift_proxy::Running {
    let eps: Vec<String> = callees
        .iter()
        .enumerate()
        .map(|(i, (name, p))| {
            format!(
                "      - {{ addr: \"{}\", host: h{i}, zone: z, container: {name} }}",
                p.inbound.unwrap()
            )
        })
        .collect();
    start_proxy(&format!(
        "mode: sidecar\noutbound: {{ listen: 127.0.0.1:0 }}\nadmin: {{ listen: 127.0.0.1:0 }}\n\
         inbound: {{ listen: 127.0.0.1:0, app: \"127.0.0.1:9\" }}\n\
         services:\n  - name: web\n    endpoints:\n{}\n",
        eps.join("\n")
    ))
}

/// Balances `services` by `prequal`, the mode for which a standalone proxy asks its upstreams
/// for load reports.
fn balance_by_reports(p: &loadshift_proxy::Running, services: &[&str]) {
    let plan = ServicePlan {
        algorithm: Algorithm::Prequal,
        ..Default::default()
    };
    p.shared
        .apply_plan(Plan {
            version: 1,
            services: services
                .iter()
                .map(|s| (s.to_string(), plan.clone()))
                .collect(),
        })
        .unwrap();
}

/// Per endpoint container name of service `svc`: its `reported` object in `/stats`, if any.
async fn reported(admin: SocketAddr, svc: usize) -> BTreeMap<String, serde_json::Value> {
    let stats = admin_json(admin, "/stats").await;
    stats["services"][svc]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| !e["reported"].is_null())
        .map(|e| {
            (
                e["container"].as_str().unwrap().to_string(),
                e["reported"].clone(),
            )
        })
        .collect()
}

async fn metrics_text(admin: SocketAddr) -> String {
    let resp = h1_client()
        .get(format!("http://{admin}/metrics").parse().unwrap())
        .await
        .unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_is_kept_by_the_caller_and_reaches_no_app() {
    let apps = [Upstream::start("a").await, Upstream::start("b").await];
    apps[1].set(Behaviour::Delay(Duration::from_millis(20)));
    let (ca, cb) = (callee(apps[0].addr), callee(apps[1].addr));
    let me = caller(&[("a", &ca), ("b", &cb)]);
    let c = h1_client();
    for _ in 0..20 {
        // A client's own field is replaced by the question, and the question never reaches
        // the app.
        let got = send(
            &c,
            me.outbound,
            "web",
            &[("loadshift-load", "rif=0;lat=0")],
            b"",
        )
        .await;
        assert_eq!(got.status, 200);
        assert_eq!(got.header("loadshift-load"), None, "{:?}", got.headers);
    }
    for app in &apps {
        assert!(app.count() > 0, "{} served", app.name);
        let seen = app.last_headers.lock().unwrap().clone();
        assert!(seen.get("loadshift-load").is_none(), "{seen:?}");
    }
    let r = reported(me.admin, 0).await;
    assert_eq!(r.len(), 2, "{r:?}");
    // Sequential calls: nothing else in flight at either app when it answered.
    assert_eq!(r["a"]["rif"], 0, "{r:?}");
    let age = r["a"]["age_ms"].as_f64().unwrap();
    assert!((0.0..5000.0).contains(&age), "{r:?}");
    // The slow app's latency as its own sidecar measured it (no network in it).
    let slow = r["b"]["latency_ms"].as_f64().unwrap();
    assert!((19.0..200.0).contains(&slow), "{r:?}");
    assert!(r["a"]["latency_ms"].as_f64().unwrap() < slow, "{r:?}");

    // Called directly, as a client outside the mesh would, the inbound side answers no report.
    let got = send(&c, ca.inbound.unwrap(), "web", &[], b"").await;
    assert_eq!(
        (got.status.as_u16(), got.header("loadshift-load")),
        (200, None)
    );
    // Asked, it does.
    let got = send(
        &c,
        ca.inbound.unwrap(),
        "web",
        &[("loadshift-load", "ask")],
        b"",
    )
    .await;
    let v = got.header("loadshift-load").unwrap();
    assert!(v.starts_with("rif=0;lat="), "{v}");
    for p in [me, ca, cb] {
        p.shutdown();
    }
}

/// An app that answers every request with `loadshift-load: <field>` (as an app that is not a
/// sidecar might), over HTTP/1.1 or h2c, remembering the last request's headers.
struct Forger {
    addr: SocketAddr,
    last: Arc<Mutex<http::HeaderMap>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Forger {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Forger {
    async fn start(field: &'static str, delay: Duration) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let last = Arc::new(Mutex::new(http::HeaderMap::new()));
        let seen = last.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let seen = seen.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        *seen.lock().unwrap() = req.headers().clone();
                        async move {
                            tokio::time::sleep(delay).await;
                            let mut resp = Response::new(Full::new(Bytes::from_static(b"ok")));
                            resp.headers_mut()
                                .insert("loadshift-load", field.parse().unwrap());
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self { addr, last, task }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_proxy_keeps_its_upstreams_reports_and_forwards_none() {
    let good = Forger::start("rif=7;lat=12.5", Duration::ZERO).await;
    let bad = Forger::start("rif=7;lat=12.5;x=1", Duration::ZERO).await;
    let yaml = format!(
        "outbound: {{ listen: 127.0.0.1:0 }}\nadmin: {{ listen: 127.0.0.1:0 }}\n\
         identity: {{ pod: edge }}\nservices:\n\
         \x20 - name: one\n    endpoints: [{{ addr: \"{g}\", container: g1 }}]\n\
         \x20 - name: two\n    protocol: http2\n    endpoints: [{{ addr: \"{g}\", container: g2 }}]\n\
         \x20 - name: bad\n    endpoints: [{{ addr: \"{b}\", container: b }}]\n",
        g = good.addr,
        b = bad.addr
    );
    let edge = start_proxy(&yaml);
    balance_by_reports(&edge, &["one", "two", "bad"]);
    let c = h1_client();
    for svc in ["one", "two", "bad"] {
        for _ in 0..3 {
            let got = send(&c, edge.outbound, svc, &[], b"").await;
            assert_eq!(got.status, 200, "{svc}");
            assert_eq!(
                got.header("loadshift-load"),
                None,
                "{svc}: {:?}",
                got.headers
            );
        }
    }
    // Over HTTP/2 to the client as well.
    let got = send_h2(edge.outbound, "one", b"").await;
    assert_eq!(
        (got.status.as_u16(), got.header("loadshift-load")),
        (200, None)
    );
    // The question went upstream (a proxy asks whoever it calls).
    assert_eq!(good.last.lock().unwrap()["loadshift-load"], "ask");
    // HTTP/1.1 and HTTP/2 upstreams' reports are kept, the malformed one is not, and counted.
    for (k, name) in [(0, "g1"), (1, "g2")] {
        let r = reported(edge.admin, k).await;
        assert_eq!(r[name]["rif"], 7, "{r:?}");
        assert_eq!(r[name]["latency_ms"], 12.5, "{r:?}");
        assert_eq!(r[name]["sent_since"], 0, "{r:?}");
    }
    assert!(reported(edge.admin, 2).await.is_empty());
    let invalid: f64 = metrics_text(edge.admin)
        .await
        .lines()
        .filter(|l| {
            l.starts_with("loadshift_proxy_load_reports_invalid_total") && l.contains("\"bad\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(invalid, 3.0);
    edge.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbound_sidecar_replaces_its_apps_own_field() {
    // The app claims to be idle and instant; it takes 20 ms.
    let liar = Forger::start("rif=0;lat=0.001", Duration::from_millis(20)).await;
    let cl = callee(liar.addr);
    let me = caller(&[("liar", &cl)]);
    let c = h1_client();
    for _ in 0..5 {
        let got = send(&c, me.outbound, "web", &[], b"").await;
        assert_eq!(got.header("loadshift-load"), None);
    }
    assert!(liar.last.lock().unwrap().get("loadshift-load").is_none());
    let r = reported(me.admin, 0).await;
    let lat = r["liar"]["latency_ms"].as_f64().unwrap();
    assert!(
        lat >= 19.0,
        "the sidecar's measurement, not the app's claim: {r:?}"
    );
    me.shutdown();
    cl.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prequal_steers_away_from_an_upstream_with_many_requests_in_flight() {
    // Two equal apps; `busy` also serves 16 requests at a time from another caller.
    let apps = [Upstream::start("busy").await, Upstream::start("free").await];
    for a in &apps {
        a.set(Behaviour::Delay(Duration::from_millis(20)));
    }
    let (cbusy, cfree) = (callee(apps[0].addr), callee(apps[1].addr));
    let stop = Arc::new(AtomicBool::new(false));
    for _ in 0..16 {
        let (c, stop, to) = (h1_client(), stop.clone(), cbusy.inbound.unwrap());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                send(&c, to, "web", &[], b"").await;
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let me = caller(&[("busy", &cbusy), ("free", &cfree)]);
    me.shared
        .apply_plan(Plan {
            version: 1,
            services: BTreeMap::from([(
                "web".to_string(),
                ServicePlan {
                    algorithm: Algorithm::Prequal,
                    ..Default::default()
                },
            )]),
        })
        .unwrap();
    let before = [apps[0].count(), apps[1].count()];
    let c = h1_client();
    for _ in 0..60 {
        assert_eq!(send(&c, me.outbound, "web", &[], b"").await.status, 200);
    }
    let r = reported(me.admin, 0).await;
    stop.store(true, Ordering::Relaxed);
    // Let the other caller's loops see it before their sidecar goes.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let free = apps[1].count() - before[1];
    // The caller's own view shows both idle: only the reports tell them apart. The busy one is
    // tried when its report is missing or more than a second old.
    assert!(free >= 54, "{free} of 60 to the free app; reports {r:?}");
    assert!(
        r["busy"]["rif"].as_u64().unwrap() >= 8,
        "the busy app's sidecar reports its load: {r:?}"
    );
    for p in [me, cbusy, cfree] {
        p.shutdown();
    }
}
