//! WebSocket through the proxy with a client and a server nobody here wrote: Debian's
//! `/usr/bin/python3` with `websockets` (`python3-websockets`) runs an echo server and a client
//! as child processes, through a standalone proxy and through two sidecars (outbound, then
//! inbound). Skipped, with a message, where that module is missing.

// Helpers panic on purpose: a failure is the test failing.
#![allow(clippy::unwrap_used)]

mod common;

use std::{net::SocketAddr, process::Stdio, time::Duration};

use common::*;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

const PYTHON: &str = "/usr/bin/python3";

/// Echoes every message; prints its port once listening.
const SERVER: &str = r#"
import asyncio, websockets

async def echo(ws):
    async for m in ws:
        await ws.send(m)

async def main():
    async with websockets.serve(echo, "127.0.0.1", 0) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()

asyncio.run(main())
"#;

/// Connects to `ws://HOST/echo` over the proxy at 127.0.0.1:PORT (the URI's host is what the
/// proxy routes by), sends text and a large binary message and a ping, closes, and prints what
/// it checked.
const CLIENT: &str = r#"
import asyncio, sys, websockets

async def main(host, port):
    big = bytes(range(256)) * 1200
    async with websockets.connect(f"ws://{host}/echo", host="127.0.0.1", port=port,
                                  open_timeout=10, max_size=None) as ws:
        await ws.send("hello from python")
        text = await asyncio.wait_for(ws.recv(), 10)
        await ws.send(big)
        data = await asyncio.wait_for(ws.recv(), 10)
        pong = await ws.ping(b"anyone?")
        await asyncio.wait_for(pong, 10)
        upgrade = ws.response_headers.get("Upgrade")
    assert text == "hello from python", text
    assert data == big, len(data)
    print("ok", upgrade, ws.close_code, flush=True)

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"#;

/// Whether Debian's Python has `websockets`; says why not when it has not.
fn python_websockets() -> bool {
    let ok = std::process::Command::new(PYTHON)
        .args(["-c", "import websockets"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!(
            "skipped: {PYTHON} -c 'import websockets' failed (Debian's python3-websockets is not installed)"
        );
    }
    ok
}

/// Starts the echo server; the child (killed on drop) and its address.
async fn echo_server() -> (Child, SocketAddr) {
    let mut child = Command::new(PYTHON)
        .args(["-c", SERVER])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let port = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("the server announces its port")
        .unwrap()
        .expect("a port line");
    (child, format!("127.0.0.1:{}", port.trim()).parse().unwrap())
}

/// Runs the client against the proxy listening on `proxy`, asking for `host`; its report line.
async fn run_client(proxy: SocketAddr, host: &str) -> String {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        Command::new(PYTHON)
            .args(["-c", CLIENT, host, &proxy.port().to_string()])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the client finishes within 60 s")
    .unwrap();
    assert!(
        out.status.success(),
        "client failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_websockets_client_and_server_talk_through_a_standalone_proxy() {
    if !python_websockets() {
        return;
    }
    let (_server, addr) = echo_server().await;
    let proxy = start_proxy(&format!(
        "outbound: {{ listen: 127.0.0.1:0 }}\nadmin: {{ listen: 127.0.0.1:0 }}\n\
         services:\n  - name: web\n    endpoints: [{{ addr: \"{addr}\" }}]\n"
    ));
    for _ in 0..3 {
        assert_eq!(run_client(proxy.outbound, "web").await, "ok websocket 1000");
    }
    tokio::task::spawn_blocking(move || proxy.shutdown())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_websockets_client_and_server_talk_through_two_sidecars() {
    if !python_websockets() {
        return;
    }
    let (_server, addr) = echo_server().await;
    let callee = start_proxy(&format!(
        "mode: sidecar\noutbound: {{ listen: 127.0.0.1:0 }}\nadmin: {{ listen: 127.0.0.1:0 }}\n\
         inbound: {{ listen: 127.0.0.1:0, app: \"{addr}\", service: echo }}\nservices: []\n"
    ));
    let inbound = callee.inbound.unwrap();
    let caller = start_proxy(&format!(
        "mode: sidecar\noutbound: {{ listen: 127.0.0.1:0 }}\nadmin: {{ listen: 127.0.0.1:0 }}\n\
         inbound: {{ listen: 127.0.0.1:0, app: \"{addr}\" }}\n\
         services:\n  - name: echo\n    endpoints: [{{ addr: \"{inbound}\" }}]\n"
    ));
    assert_eq!(
        run_client(caller.outbound, "echo").await,
        "ok websocket 1000"
    );
    tokio::task::spawn_blocking(move || {
        caller.shutdown();
        callee.shutdown();
    })
    .await
    .unwrap();
}
