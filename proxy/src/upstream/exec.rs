//! Executor for hyper's HTTP/2 tasks on a worker's current-thread runtime: spawns on the local
//! task set, so per-worker state can be `Rc` and needs no locks.

use std::future::Future;

/// Spawns with `tokio::task::spawn_local`; must be used inside a `LocalSet`.
#[derive(Clone, Copy, Debug, Default)]
pub struct LocalExec;

impl<F> hyper::rt::Executor<F> for LocalExec
where
    F: Future + 'static,
{
    fn execute(&self, fut: F) {
        tokio::task::spawn_local(fut);
    }
}
