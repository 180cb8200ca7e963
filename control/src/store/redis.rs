//! A Redis [`TableStore`] for a replicated control plane: every replica reads and writes the same
//! performance hash table, as the Imbres implementation keeps its table in Redis (seed 002 §5).
//!
//! Layout: one Redis hash (default key `loadshift:perf_table:v1`), field = service name, value =
//! the service's [`StoredTable`] as JSON. A save writes its services in one `MULTI`/`EXEC`
//! transaction; concurrent replicas are last-writer-wins per service, which is acceptable for a
//! table of smoothed estimates that every replica keeps refreshing. A failed call drops the
//! connection so the next call reconnects.

use std::{collections::BTreeMap, time::Duration};

use redis::{Commands, Connection};

use loadshift_policy::{
    planners::perf_table::StoredTable,
    store::{StoreError, TableStore},
};

use super::{decode, encode};

/// Default hash key.
pub const DEFAULT_KEY: &str = "loadshift:perf_table:v1";

/// Table store in a Redis hash.
pub struct RedisStore {
    client: redis::Client,
    conn: Option<Connection>,
    key: String,
    timeout: Duration,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

fn redis_err(e: redis::RedisError) -> StoreError {
    StoreError::Backend {
        store: "redis",
        message: e.to_string(),
    }
}

impl RedisStore {
    /// Connects to `url` (`redis://host:port/db`) now, so a wrong address fails at startup.
    /// `timeout` bounds connecting and every command.
    pub fn open(url: &str, key: impl Into<String>, timeout: Duration) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(redis_err)?;
        let mut store = Self {
            client,
            conn: None,
            key: key.into(),
            timeout,
        };
        store.conn()?;
        Ok(store)
    }

    fn conn(&mut self) -> Result<&mut Connection, StoreError> {
        if self.conn.is_none() {
            let c = self
                .client
                .get_connection_with_timeout(self.timeout)
                .map_err(redis_err)?;
            c.set_read_timeout(Some(self.timeout)).map_err(redis_err)?;
            c.set_write_timeout(Some(self.timeout)).map_err(redis_err)?;
            self.conn = Some(c);
        }
        // Set just above when it was empty.
        self.conn.as_mut().ok_or_else(|| StoreError::Backend {
            store: "redis",
            message: "no connection".into(),
        })
    }

    /// Runs `f` on the connection; on failure forgets the connection.
    fn with_conn<T>(
        &mut self,
        f: impl FnOnce(&mut Connection, &str) -> redis::RedisResult<T>,
    ) -> Result<T, StoreError> {
        let key = self.key.clone();
        let out = f(self.conn()?, &key);
        if out.is_err() {
            self.conn = None;
        }
        out.map_err(redis_err)
    }
}

impl TableStore for RedisStore {
    fn load_all(&mut self) -> Result<BTreeMap<String, StoredTable>, StoreError> {
        let raw: BTreeMap<String, String> = self.with_conn(|c, key| c.hgetall(key))?;
        raw.into_iter()
            .map(|(service, json)| {
                let t = decode(&service, &json)?;
                Ok((service, t))
            })
            .collect()
    }

    fn save(&mut self, tables: &[(String, StoredTable)]) -> Result<(), StoreError> {
        let encoded: Vec<(String, String)> = tables
            .iter()
            .map(|(s, t)| Ok((s.clone(), encode(s, t)?)))
            .collect::<Result<_, StoreError>>()?;
        self.with_conn(|c, key| {
            let mut pipe = redis::pipe();
            pipe.atomic();
            for (service, json) in &encoded {
                pipe.hset(key, service, json).ignore();
            }
            pipe.query::<()>(c)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use loadshift_policy::{
        planners::perf_table::{Interference, PerfTable, TableParams},
        store::{persist, restore},
    };
    use std::{
        net::TcpListener,
        process::{Child, Command, Stdio},
        time::Instant,
    };

    /// A `redis-server` on a free loopback port, killed on drop.
    struct Server {
        child: Child,
        url: String,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn start() -> Option<Server> {
        if Command::new("redis-server")
            .arg("--version")
            .output()
            .is_err()
        {
            println!("SKIPPED: redis-server is not installed (apt-get install -y redis-server)");
            return None;
        }
        // Ask the OS for a free port, release it, and hand it to redis-server.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = Server {
            child,
            url: format!("redis://127.0.0.1:{port}/"),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if RedisStore::open(&server.url, DEFAULT_KEY, Duration::from_millis(200)).is_ok() {
                return Some(server);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not accept connections on port {port} within 10 s");
    }

    #[test]
    fn replicas_share_the_table_through_a_real_redis() {
        let Some(server) = start() else {
            return;
        };
        let timeout = Duration::from_secs(2);
        let cpu = |u| Interference {
            cpu: u,
            membw: 0.0,
            net: 0.0,
        };
        let mut learned = PerfTable::new(TableParams {
            max_load_rps: Some(100.0),
            ..Default::default()
        });
        learned.record("a", cpu(0.1), 10.0, 10.0, 50);
        learned.record("a", cpu(0.1), 90.0, 40.0, 50);
        learned.record("b", cpu(0.7), 30.0, 80.0, 5);

        let mut writer = RedisStore::open(&server.url, DEFAULT_KEY, timeout).unwrap();
        assert!(writer.load_all().unwrap().is_empty());
        assert_eq!(persist(&mut learned, &mut writer).unwrap(), 2);

        // Another replica, its own connection: sees the same table.
        let mut reader = RedisStore::open(&server.url, DEFAULT_KEY, timeout).unwrap();
        let mut replica = PerfTable::new(*learned.params());
        assert_eq!(restore(&mut replica, &mut reader).unwrap(), 2);
        assert_eq!(replica.service("a"), learned.service("a"));
        assert_eq!(replica.service("b"), learned.service("b"));
        let got = replica.lookup("a", cpu(0.1), 40.0).unwrap();
        assert!((got - 21.0).abs() < 1e-9, "{got}");

        // Tables under another key are separate.
        let mut other = RedisStore::open(&server.url, "other", timeout).unwrap();
        assert!(other.load_all().unwrap().is_empty());

        // Server gone: a clear error, then recovery is not expected from a dead server.
        drop(server);
        let e = reader.load_all().unwrap_err().to_string();
        assert!(e.starts_with("redis store"), "{e}");
    }

    #[test]
    fn unreachable_redis_fails_at_open() {
        // A port nobody listens on: bind, read the port, close.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("redis://127.0.0.1:{port}/");
        let e = RedisStore::open(&url, DEFAULT_KEY, Duration::from_millis(300)).unwrap_err();
        assert!(e.to_string().starts_with("redis store"), "{e}");
    }
}
