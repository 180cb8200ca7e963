//! Which zone a connection to a zone relay comes from.
//!
//! Plans key endpoints by `ip:port`, so every caller must reach a container at the same address
//! and the relay in front of it cannot be chosen per caller zone. The relay instead identifies
//! the caller of each accepted connection: the peer's port names a socket in `/proc/net/tcp`, its
//! inode is one of the file descriptors of a lab child process, and that process's
//! `proxy --config FILE` holds `identity.zone`. Lookups run once per connection (proxies keep
//! their upstream connections), and both maps are cached.
//!
//! Reading `/proc/net/tcp` and the proxies' descriptor tables costs tens of milliseconds on a
//! busy machine (thousands of sockets), so [`Identifier`] does it on its own thread and answers
//! every connection waiting at that moment from one read of each: a burst of new connections
//! costs one walk, not one each.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::mpsc;

use tokio::sync::oneshot;

type Request = (SocketAddr, SocketAddr, oneshot::Sender<Option<String>>);

/// Identifies callers on a thread of its own, in batches (see the module documentation). The
/// thread ends when the last clone is dropped.
#[derive(Clone, Debug)]
pub struct Identifier {
    tx: mpsc::Sender<Request>,
}

impl Identifier {
    pub fn spawn() -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("lab-peer-zones".into())
            .spawn(move || {
                let mut zones = PeerZones::default();
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    batch.extend(rx.try_iter());
                    let asks: Vec<_> = batch.iter().map(|(p, l, _)| (*p, *l)).collect();
                    for ((_, _, reply), zone) in batch.into_iter().zip(zones.zones_of(&asks)) {
                        // The asking connection may be gone already.
                        let _ = reply.send(zone);
                    }
                }
            })?;
        Ok(Self { tx })
    }

    /// Zone of the lab proxy whose socket `peer` is connected to `local`.
    pub async fn zone_of(&self, peer: SocketAddr, local: SocketAddr) -> Option<String> {
        let (reply, answer) = oneshot::channel();
        self.tx.send((peer, local, reply)).ok()?;
        answer.await.ok().flatten()
    }
}

/// Caches of the `/proc` walk: socket inode -> zone, pid -> zone (`None`: not a proxy).
#[derive(Debug, Default)]
pub struct PeerZones {
    by_inode: HashMap<u64, String>,
    by_pid: HashMap<u32, Option<String>>,
}

impl PeerZones {
    /// For each (peer, local): the zone of the lab proxy whose socket `peer` is connected to
    /// `local`; `None` when no lab proxy owns it (another process, or one already gone). One read
    /// of `/proc/net/tcp` and at most one walk of the proxies' descriptors for the whole batch.
    pub fn zones_of(&mut self, asks: &[(SocketAddr, SocketAddr)]) -> Vec<Option<String>> {
        let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
        let inodes: Vec<Option<u64>> = asks
            .iter()
            .map(|&(peer, local)| match (peer, local) {
                (SocketAddr::V4(p), SocketAddr::V4(l)) => find_inode(&table, p, l),
                _ => None,
            })
            .collect();
        if inodes
            .iter()
            .flatten()
            .any(|i| !self.by_inode.contains_key(i))
        {
            self.rescan();
        }
        inodes
            .into_iter()
            .map(|i| i.and_then(|i| self.by_inode.get(&i).cloned()))
            .collect()
    }

    /// Rebuilds the inode map from every child proxy's open sockets.
    fn rescan(&mut self) {
        self.by_inode.clear();
        for pid in children() {
            let zone = self
                .by_pid
                .entry(pid)
                .or_insert_with(|| proxy_zone(pid))
                .clone();
            let Some(zone) = zone else { continue };
            let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
                continue;
            };
            for fd in fds.flatten() {
                let Ok(link) = std::fs::read_link(fd.path()) else {
                    continue;
                };
                if let Some(inode) = link
                    .to_str()
                    .and_then(|l| l.strip_prefix("socket:["))
                    .and_then(|l| l.strip_suffix(']'))
                    .and_then(|l| l.parse().ok())
                {
                    self.by_inode.insert(inode, zone.clone());
                }
            }
        }
    }
}

/// Pids of this process's children (every thread's `children` list).
fn children() -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for t in tasks.flatten() {
        if let Ok(list) = std::fs::read_to_string(t.path().join("children")) {
            pids.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    pids
}

/// `identity.zone` of a `loadshift proxy --config FILE` process; `None` for anything else.
fn proxy_zone(pid: u32) -> Option<String> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    if !args.iter().any(|a| *a == b"proxy") {
        return None;
    }
    let i = args.iter().position(|a| *a == b"--config")?;
    let path = std::str::from_utf8(args.get(i + 1)?).ok()?;
    config_zone(Path::new(path))
}

/// `identity.zone` of a proxy config file.
pub fn config_zone(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_yaml_ng::from_str(&text).ok()?;
    v["identity"]["zone"].as_str().map(str::to_string)
}

/// `/proc/net/tcp` rows: `sl local rem st queues timer retr uid timeout inode ...`, addresses as
/// `AABBCCDD:PPPP` with the IPv4 address in host (little-endian) byte order.
fn find_inode(
    table: &str,
    peer: std::net::SocketAddrV4,
    local: std::net::SocketAddrV4,
) -> Option<u64> {
    let render = |a: std::net::SocketAddrV4| {
        format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(a.ip().octets()),
            a.port()
        )
    };
    let (want_local, want_rem) = (render(peer), render(local));
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.len() > 9 && f[1] == want_local && f[2] == want_rem)
            .then(|| f[9].parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_socket_row_by_both_ends() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 20 4 30 10 -1\n\
   1: 0100007F:C350 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0000000000000000 20 4 30 10 -1\n";
        let a: std::net::SocketAddrV4 = "127.0.0.1:8080".parse().unwrap();
        let b: std::net::SocketAddrV4 = "127.0.0.1:50000".parse().unwrap();
        assert_eq!(find_inode(table, a, b), Some(4242));
        assert_eq!(find_inode(table, b, a), Some(4343));
        assert_eq!(find_inode(table, a, a), None);
    }

    #[test]
    fn identifies_the_zone_of_a_child_proxy_connection() {
        let dir = std::env::temp_dir().join(format!("loadshift-peer-zone-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("sidecar.yaml");
        std::fs::write(&cfg, "identity:\n  zone: eu\n").unwrap();
        assert_eq!(config_zone(&cfg).as_deref(), Some("eu"));
        // A socket of this process is no child proxy's: unidentified, not misattributed.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (_s, peer) = l.accept().unwrap();
        assert_eq!(peer, c.local_addr().unwrap());
        let (SocketAddr::V4(p), SocketAddr::V4(a)) = (peer, l.local_addr().unwrap()) else {
            panic!("IPv4 loopback")
        };
        let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
        assert!(find_inode(&table, p, a).is_some());
        assert_eq!(
            PeerZones::default().zones_of(&[(peer, l.local_addr().unwrap())]),
            [None]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
