//! Downstream calls of the emulated app: each child service is called with its probability, in
//! sequence or all at once, through the sidecar's outbound listener with `Host: <service>` so the
//! proxy routes (and balances, blocks, measures) the call exactly as it would a real one.
//!
//! A failed call (a 5xx, which includes the sidecar's own 503 when the service has no endpoint
//! or blocks the call, or no response) fails the request, unless the child is optional: then the
//! request goes on without it and is degraded, as the simulator treats a failed call to an
//! optional service.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use http::header::{HOST, HeaderMap, HeaderName, HeaderValue};
use http::{Request, StatusCode};
use http_body_util::Empty;
use rand::Rng;

use crate::tools::support::Pool;

/// One child service and the probability that a request calls it.
#[derive(Debug, Clone, PartialEq)]
pub struct Child {
    /// Service name, sent as `Host`.
    pub service: String,
    /// Probability in [0, 1] that a request calls this child.
    pub probability: f64,
    /// Its failed call degrades the request instead of failing it (`--optional`).
    pub optional: bool,
}

impl FromStr for Child {
    type Err = String;

    /// `SERVICE` (always called) or `SERVICE:PROBABILITY`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (service, p) = match s.rsplit_once(':') {
            Some((svc, p)) => {
                let p: f64 = p
                    .parse()
                    .map_err(|_| format!("{s:?}: probability is not a number"))?;
                (svc, p)
            }
            None => (s, 1.0),
        };
        if service.is_empty() || HeaderValue::from_str(service).is_err() {
            return Err(format!("{s:?}: invalid service name"));
        }
        if !(0.0..=1.0).contains(&p) {
            return Err(format!("{s:?}: probability must be in [0, 1]"));
        }
        Ok(Self {
            service: service.to_string(),
            probability: p,
            optional: false,
        })
    }
}

/// How the children of one request are called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CallMode {
    /// One after another; the request fails at the first failing child that is not optional.
    Sequence,
    /// All at once; the request waits for every child.
    Parallel,
}

/// The children of an app and the connections to its sidecar.
#[derive(Debug)]
pub struct Downstream {
    /// Children in call order.
    pub children: Vec<Child>,
    /// Sequence or parallel.
    pub mode: CallMode,
    /// Keep-alive connections to the sidecar's outbound listener.
    pub pool: Arc<Pool>,
    /// Request headers copied onto child calls (for example the priority class header).
    pub propagate: Vec<HeaderName>,
    /// Timeout of one child call.
    pub timeout: Duration,
}

/// A failed child call: its service and the status to answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildFailure {
    /// The child service.
    pub service: String,
    /// The child's 5xx status, or 502 when it gave no response.
    pub status: StatusCode,
}

impl Downstream {
    /// Draws which children this request calls, each with its own probability.
    pub fn pick(&self, rng: &mut impl Rng) -> Vec<usize> {
        (0..self.children.len())
            .filter(|&i| rng.random::<f64>() < self.children[i].probability)
            .collect()
    }

    /// Calls the picked children (indices from [`Downstream::pick`]); returns the optional
    /// children whose call failed (the request goes on degraded), or the failure that fails it.
    pub async fn call(
        &self,
        picked: &[usize],
        incoming: &HeaderMap,
    ) -> Result<Vec<String>, ChildFailure> {
        let picked = picked.iter().filter_map(|&i| self.children.get(i));
        let mut degraded = Vec::new();
        let mut settle = |child: &Child, result: Result<(), ChildFailure>| match result {
            Err(f) if child.optional => {
                degraded.push(f.service);
                Ok(())
            }
            other => other,
        };
        match self.mode {
            CallMode::Sequence => {
                for child in picked {
                    let result = self.call_one(child, incoming).await;
                    settle(child, result)?;
                }
            }
            CallMode::Parallel => {
                let picked: Vec<&Child> = picked.collect();
                let results = join_all(picked.iter().map(|c| self.call_one(c, incoming))).await;
                for (child, result) in picked.into_iter().zip(results) {
                    settle(child, result)?;
                }
            }
        }
        Ok(degraded)
    }

    async fn call_one(&self, child: &Child, incoming: &HeaderMap) -> Result<(), ChildFailure> {
        let fail = |status| ChildFailure {
            service: child.service.clone(),
            status,
        };
        let mut req = Request::new(Empty::<Bytes>::new());
        // Validated when the child was parsed.
        let host =
            HeaderValue::from_str(&child.service).map_err(|_| fail(StatusCode::BAD_GATEWAY))?;
        req.headers_mut().insert(HOST, host);
        for name in &self.propagate {
            if let Some(v) = incoming.get(name) {
                req.headers_mut().insert(name.clone(), v.clone());
            }
        }
        let exchange = async {
            let lease = self.pool.checkout().await.ok()?;
            lease.send(req, self.timeout).await.ok()
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Some(resp)) if resp.status().is_server_error() => Err(fail(resp.status())),
            Ok(Some(_)) => Ok(()),
            _ => Err(fail(StatusCode::BAD_GATEWAY)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_parse_with_optional_probability() {
        assert_eq!(
            "db".parse(),
            Ok(Child {
                service: "db".into(),
                probability: 1.0,
                optional: false,
            })
        );
        assert_eq!(
            "db:0.25".parse(),
            Ok(Child {
                service: "db".into(),
                probability: 0.25,
                optional: false,
            })
        );
        assert_eq!(
            "db.ns:8080:0.5".parse(),
            Ok(Child {
                service: "db.ns:8080".into(),
                probability: 0.5,
                optional: false,
            })
        );
        assert!("db:1.5".parse::<Child>().is_err());
        assert!(":0.5".parse::<Child>().is_err());
    }
}
