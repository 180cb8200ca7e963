//! The records of requests in flight and of the calls they fan out into, kept in free-listed
//! vectors by the engine and linked by index.

#[derive(Clone, Copy)]
pub(crate) struct CallRec {
    pub req: u32,
    pub parent: u32,
    pub svc: u32,
    pub ctr: u32,
    pub proxy: u32,
    pub slot: u16,
    pub next: u16,
    pub pending: u16,
    pub error: bool,
    /// A failure here does not fail the request: this call, or one of the calls it descends
    /// from below the root, is to an optional service, whose caller goes on without it.
    pub degradable: bool,
    pub gated: bool,
    pub t_send: u64,
    pub t_arrive: u64,
    /// Calls at the container when this one arrived: what its latency sample is filed under in
    /// the container's [`loadshift_core::telemetry::RifLatency`].
    pub rif_at_arrive: u32,
}

#[derive(Clone, Copy)]
pub(crate) struct Req {
    pub flow: u16,
    pub t_start: u64,
    pub blocked: bool,
    pub failed: bool,
    pub counted: bool,
    pub live: bool,
}
