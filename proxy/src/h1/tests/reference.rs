//! The reference reading of the same bytes: hyper's HTTP/1 server over an in-memory pipe. The
//! client side writes the input and half-closes; the service records each request as its head
//! arrives and its body once collected, and answers `200` with an empty body so the connection
//! carries on to the next request while hyper's keep-alive rules allow.

use std::{cell::RefCell, convert::Infallible, rc::Rc, time::Duration};

use bytes::Bytes;
use futures_util::future::join;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Seen;

/// What hyper's server delivered, and how its connection ended.
#[derive(Debug)]
pub struct Reading {
    pub requests: Vec<Seen>,
    /// The connection's error (a refused head, a failed body), if any.
    pub error: Option<String>,
}

/// A body hyper's connection dropped before the service had it whole.
const UNFINISHED: &str = "the connection ended before the body was collected";

pub fn read(input: &[u8]) -> Reading {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime")
        .block_on(serve(input))
}

async fn serve(input: &[u8]) -> Reading {
    let (mut client, server) = tokio::io::duplex(input.len() + 64 * 1024);
    let seen: Rc<RefCell<Vec<Seen>>> = Rc::default();
    let record = seen.clone();
    let svc = service_fn(move |req: Request<Incoming>| {
        let record = record.clone();
        async move {
            let (parts, body) = req.into_parts();
            let i = {
                let mut r = record.borrow_mut();
                r.push(Seen {
                    method: parts.method,
                    target: parts.uri.to_string(),
                    version: parts.version,
                    headers: parts.headers,
                    body: Err(UNFINISHED.into()),
                });
                r.len() - 1
            };
            let body = body
                .collect()
                .await
                .map(|c| c.to_bytes().to_vec())
                .map_err(|e| e.to_string());
            record.borrow_mut()[i].body = body;
            Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
        }
    });
    // Half-close: the input's end is the client having sent everything, not an abort.
    let conn = http1::Builder::new()
        .half_close(true)
        .serve_connection(TokioIo::new(server), svc);
    let talk = async {
        client.write_all(input).await?;
        client.shutdown().await?;
        let mut answers = Vec::new();
        client.read_to_end(&mut answers).await.map(|_| answers)
    };
    let (served, _) = tokio::time::timeout(Duration::from_secs(10), join(conn, talk))
        .await
        .expect("hyper finishes with an input that has ended");
    Reading {
        requests: seen.take(),
        error: served.err().map(|e| format!("{e:?}")),
    }
}
