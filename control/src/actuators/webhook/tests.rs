use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU16, Ordering},
    },
};

use http_body_util::Full;
use hyper::{Response, StatusCode, body::Incoming, service::service_fn};
use parking_lot::Mutex;

use super::*;

/// (Authorization header, body) of each request received.
type Seen = Arc<Mutex<Vec<(Option<String>, String)>>>;

/// A real HTTP/1.1 server on 127.0.0.1:0 answering every POST with `status`, recording
/// (Authorization header, body) of each request; it stops when the returned runtime drops.
struct Receiver {
    addr: SocketAddr,
    status: Arc<AtomicU16>,
    seen: Seen,
    _rt: tokio::runtime::Runtime,
}

fn receiver() -> Receiver {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let status = Arc::new(AtomicU16::new(200));
    let seen: Seen = Arc::default();
    let (st, sn) = (status.clone(), seen.clone());
    rt.spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (st, sn) = (st.clone(), sn.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<Incoming>| {
                    let (st, sn) = (st.clone(), sn.clone());
                    async move {
                        let auth = req
                            .headers()
                            .get(header::AUTHORIZATION)
                            .and_then(|v| v.to_str().ok())
                            .map(String::from);
                        let body = req.into_body().collect().await?.to_bytes();
                        sn.lock()
                            .push((auth, String::from_utf8_lossy(&body).into_owned()));
                        let code = StatusCode::from_u16(st.load(Ordering::Relaxed))
                            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                        let mut resp = Response::new(Full::new(Bytes::from_static(b"busy\n")));
                        *resp.status_mut() = code;
                        Ok::<_, hyper::Error>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Receiver {
        addr,
        status,
        seen,
        _rt: rt,
    }
}

fn decision() -> ScaleDecision {
    ScaleDecision {
        service: "api".into(),
        from: 1,
        to: 3,
        reason: "hpa: busy".into(),
        ..Default::default()
    }
}

#[test]
fn posts_the_decision_and_fails_on_non_2xx() {
    let r = receiver();
    let dir = tempfile::tempdir().expect("dir");
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret\n").expect("token");
    let mut hook = Webhook::new(&WebhookConfig {
        url: format!("http://{}/scale?lab=1", r.addr),
        timeout_ms: 2000,
        token_file: Some(token),
        kinds: vec![ActionKind::Replicas],
    })
    .expect("valid");
    hook.apply(&decision()).expect("2xx is success");
    {
        let seen = r.seen.lock();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].0.as_deref(), Some("Bearer s3cret"));
        let got: ScaleDecision = serde_json::from_str(&seen[0].1).expect("json body");
        assert_eq!(got, decision());
    }
    r.status.store(503, Ordering::Relaxed);
    let e = hook
        .apply(&decision())
        .expect_err("503 is an error")
        .to_string();
    assert!(e.contains("503") && e.contains("busy"), "{e}");
    // Retried next round: the same decision goes through once the receiver recovers.
    r.status.store(204, Ordering::Relaxed);
    hook.apply(&decision()).expect("recovered");
    assert_eq!(r.seen.lock().len(), 3);
}

#[test]
fn unreachable_receiver_and_bad_config_are_errors() {
    // A port that was free a moment ago: connection refused.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port");
    let mut hook = Webhook::new(&WebhookConfig {
        url: format!("http://{addr}/"),
        timeout_ms: 1000,
        token_file: None,
        kinds: vec![ActionKind::Replicas],
    })
    .expect("valid");
    let e = hook.apply(&decision()).expect_err("refused").to_string();
    assert!(e.contains("connect"), "{e}");

    let cfg = |url: &str, timeout_ms| WebhookConfig {
        url: url.into(),
        timeout_ms,
        token_file: None,
        kinds: vec![ActionKind::Replicas],
    };
    for (c, want) in [
        (cfg("https://example.com/", 1), "https is not supported"),
        (cfg("ftp://x/", 1), "must start with http://"),
        (cfg("not a url", 1), "not a URL"),
        (cfg("http://127.0.0.1:1/", 0), "webhook.timeout_ms"),
    ] {
        let e = Webhook::new(&c).expect_err("invalid").to_string();
        assert!(e.contains(want), "{e}");
    }
    let e = Webhook::new(&WebhookConfig {
        token_file: Some("/nonexistent/token".into()),
        ..cfg("http://127.0.0.1:1/", 1)
    })
    .expect_err("missing token")
    .to_string();
    assert!(e.contains("webhook.token_file"), "{e}");
}
