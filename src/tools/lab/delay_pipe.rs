//! One direction of a relayed TCP connection, delayed: every chunk read is written out `delay`
//! later (the delay evaluated when the chunk arrived, so a changing RTT schedule applies to new
//! traffic), in order, and end-of-stream is passed on as a half-close after the last chunk.
//!
//! Delays under [`MIN_SLEEP`] are not slept: tokio's timer has millisecond resolution, so a
//! 0.15 ms half of an intra-zone RTT would become a full millisecond; the relay hop itself
//! (two loopback writes and a task wake-up) already costs a comparable tenth of a millisecond.
//! Longer sleeps are asked to end [`TIMER_SLACK`] early: the timer rounds its deadline up to a
//! millisecond tick and the runtime's poll timeout rounds up again, so a sleep ends about a
//! millisecond late on average; with the slack, chunks land within about a millisecond of their
//! due time and on time on average (a 10 ms RTT measures 10.1-10.5 ms on the development
//! machine).

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Shorter delays are not slept (see the module documentation).
pub const MIN_SLEEP: Duration = Duration::from_millis(1);
/// How much earlier than the deadline a sleep is asked to end (see the module documentation).
pub const TIMER_SLACK: Duration = Duration::from_micros(1100);
/// Chunks in flight per direction before the reader waits (backpressure toward the sender).
const QUEUE: usize = 256;
/// Read buffer growth per read.
const READ_CHUNK: usize = 16 * 1024;

/// Copies `from` to `to`, each chunk `delay()` late; `observe(delay)` gets the delay each chunk
/// really had (from its arrival to its write). Returns when `from` ends and everything it sent
/// was written, or on the first error of either side.
pub async fn pipe(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    delay: impl Fn() -> Duration,
    mut observe: impl FnMut(Duration),
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Instant, bytes::Bytes)>(QUEUE);
    let reader = async move {
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        loop {
            buf.reserve(READ_CHUNK);
            match from.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let now = Instant::now();
            let chunk = buf.split().freeze();
            if tx.send((now, now + delay(), chunk)).await.is_err() {
                return;
            }
        }
    };
    let writer = async move {
        // A chunk never overtakes the one before it, even when the RTT just dropped.
        let mut not_before = Instant::now();
        while let Some((arrived, due, chunk)) = rx.recv().await {
            let due = due.max(not_before);
            not_before = due;
            if due.saturating_duration_since(arrived) >= MIN_SLEEP {
                tokio::time::sleep_until(due - TIMER_SLACK).await;
            }
            if to.write_all(&chunk).await.is_err() {
                return;
            }
            observe(arrived.elapsed());
        }
        // The sender closed its side: pass the half-close on.
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::{TcpListener, TcpStream};

    #[tokio::test]
    async fn delays_each_chunk_and_passes_the_half_close_on() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dst = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (src_addr, dst_addr) = (l.local_addr().unwrap(), dst.local_addr().unwrap());
        let relay = tokio::spawn(async move {
            let (a, _) = l.accept().await.unwrap();
            let b = TcpStream::connect(dst_addr).await.unwrap();
            let (ar, _aw) = a.into_split();
            let (_br, bw) = b.into_split();
            let mut seen = Vec::new();
            pipe(ar, bw, || Duration::from_millis(30), |d| seen.push(d)).await;
            seen
        });
        let mut client = TcpStream::connect(src_addr).await.unwrap();
        let (mut server, _) = dst.accept().await.unwrap();
        let start = Instant::now();
        client.write_all(b"hello").await.unwrap();
        client.shutdown().await.unwrap();
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        let took = start.elapsed();
        assert_eq!(got, b"hello");
        assert!(took >= Duration::from_millis(28), "{took:?}");
        assert!(took < Duration::from_secs(2), "{took:?}");
        let seen = relay.await.unwrap();
        assert_eq!(seen.len(), 1);
        assert!(seen[0] >= Duration::from_millis(28), "{seen:?}");
    }
}
