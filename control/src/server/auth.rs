//! Bearer-token check for both APIs: every call must carry `authorization: Bearer <token>` with
//! the token from the configured file; anything else is refused with `UNAUTHENTICATED` and a
//! message that says what was missing.

use std::sync::Arc;

use tonic::{Request, Status, service::Interceptor};

use crate::metrics as m;

/// Tonic interceptor holding the expected token.
#[derive(Clone, Debug)]
pub struct BearerAuth {
    token: Arc<str>,
    api: &'static str,
}

impl BearerAuth {
    /// `api` labels the refusal metric (`proxy` or `operator`).
    pub fn new(token: Arc<str>, api: &'static str) -> Self {
        Self { token, api }
    }

    fn check(&self, header: Option<&str>) -> Result<(), Status> {
        let Some(value) = header else {
            return Err(Status::unauthenticated(
                "missing `authorization: Bearer <token>` metadata; pass the token from the control plane's token file",
            ));
        };
        let Some(given) = value.strip_prefix("Bearer ") else {
            return Err(Status::unauthenticated(
                "authorization metadata must be `Bearer <token>`",
            ));
        };
        if !constant_time_eq(given.trim().as_bytes(), self.token.as_bytes()) {
            return Err(Status::unauthenticated(
                "bearer token does not match the control plane's token",
            ));
        }
        Ok(())
    }
}

impl Interceptor for BearerAuth {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        let header = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        match self.check(header) {
            Ok(()) => Ok(req),
            Err(s) => {
                metrics::counter!(m::UNAUTHENTICATED, "api" => self.api).increment(1);
                Err(s)
            }
        }
    }
}

/// Compares without an early exit, so timing does not reveal how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_missing_malformed_and_wrong_tokens() {
        let a = BearerAuth::new("s3cret".into(), "proxy");
        assert!(a.check(Some("Bearer s3cret")).is_ok());
        for bad in [
            None,
            Some("s3cret"),
            Some("Bearer nope"),
            Some("Bearer s3cre"),
        ] {
            let e = a.check(bad).unwrap_err();
            assert_eq!(e.code(), tonic::Code::Unauthenticated);
            assert!(!e.message().is_empty());
        }
    }
}
