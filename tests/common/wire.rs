//! Raw-socket pieces of the wire tests: reading responses byte by byte, and an upstream that
//! answers with fixed bytes and records what reached it.
// Test support: a failed step fails the test on the spot.
#![allow(dead_code, clippy::unwrap_used)]

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// A response read off the wire.
#[derive(Debug)]
pub struct Wire {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Wire {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one response (content-length or no body) from `s`, keeping extra bytes in `buf`.
pub async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>, head_only: bool) -> Wire {
    loop {
        let mut fields = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Response::new(&mut fields);
        if let httparse::Status::Complete(n) = r.parse(buf).unwrap() {
            let status = r.code.unwrap();
            let headers: Vec<(String, String)> = r
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_string(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            let len: usize = if head_only || status == 100 {
                0
            } else {
                headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                    .map_or(0, |(_, v)| v.parse().unwrap())
            };
            while buf.len() < n + len {
                read_some(s, buf).await;
            }
            let body = buf[n..n + len].to_vec();
            buf.drain(..n + len);
            return Wire {
                status,
                headers,
                body,
            };
        }
        read_some(s, buf).await;
    }
}

pub async fn read_some(s: &mut TcpStream, buf: &mut Vec<u8>) {
    let mut chunk = [0u8; 65536];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
        .await
        .expect("response within 10 s")
        .unwrap();
    assert!(
        n > 0,
        "connection closed; have {:?}",
        String::from_utf8_lossy(buf)
    );
    buf.extend_from_slice(&chunk[..n]);
}

/// True when the proxy closes the connection (EOF) within 5 s.
pub async fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

pub async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.unwrap()
}

/// A raw upstream's handle: its address, connections accepted, and every byte it received.
pub struct RawUpstream {
    pub addr: SocketAddr,
    pub conns: Arc<AtomicUsize>,
    pub received: Arc<Mutex<Vec<u8>>>,
}

impl RawUpstream {
    pub fn received(&self) -> String {
        String::from_utf8_lossy(&self.received.lock().unwrap()).into_owned()
    }

    pub fn connections(&self) -> usize {
        self.conns.load(Ordering::Relaxed)
    }
}

/// A raw upstream: answers every request head on a connection with `response`, and closes the
/// connection after each answer when `close_after` is set (without saying so, as an upstream
/// whose idle timeout fired would).
pub async fn raw_upstream_recording(response: &'static [u8], close_after: bool) -> RawUpstream {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let received = Arc::new(Mutex::new(Vec::new()));
    let (c, r) = (conns.clone(), received.clone());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            c.fetch_add(1, Ordering::Relaxed);
            let r = r.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..p + 4);
                        if s.write_all(response).await.is_err() {
                            return;
                        }
                        if close_after {
                            return;
                        }
                    }
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            buf.extend_from_slice(&chunk[..n]);
                            r.lock().unwrap().extend_from_slice(&chunk[..n]);
                        }
                    }
                }
            });
        }
    });
    RawUpstream {
        addr,
        conns,
        received,
    }
}

/// [`raw_upstream_recording`] as an address and a connection count.
pub async fn raw_upstream(
    response: &'static [u8],
    close_after: bool,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let u = raw_upstream_recording(response, close_after).await;
    (u.addr, u.conns)
}
