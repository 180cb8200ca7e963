//! Request blocking per service and priority class: a drop fraction `b` in [0, 1] and an in-flight
//! cap. The fraction is applied by error diffusion on one atomic counter (each request adds `b`; a
//! request is blocked when the running sum crosses an integer), so exactly `round(b * n)` of `n`
//! requests are blocked, deterministically and without a random draw or a lock.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Fixed-point scale of a fraction: 2^32 is 1.0.
const ONE: f64 = 4_294_967_296.0;

/// Why a request was refused; rendered in the `loadshift-blocked` response header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockReason {
    /// The plan's drop fraction for the class.
    Fraction,
    /// The class's in-flight cap was reached.
    InFlightCap,
}

impl BlockReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fraction => "fraction",
            Self::InFlightCap => "in-flight-cap",
        }
    }
}

/// Admission state for one (service, class).
#[derive(Debug)]
pub struct Gate {
    /// Fraction in fixed point (0..=2^32).
    fraction: u64,
    credit: AtomicU64,
    cap: Option<u32>,
    in_flight: AtomicU32,
}

/// Holds one unit of in-flight budget; released on drop.
#[derive(Debug)]
pub struct Permit<'a> {
    gate: &'a Gate,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.gate.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Gate {
    /// `fraction` must already be validated into [0, 1].
    pub fn new(fraction: f64, cap: Option<u32>) -> Self {
        Self {
            fraction: (fraction.clamp(0.0, 1.0) * ONE) as u64,
            credit: AtomicU64::new(0),
            cap,
            in_flight: AtomicU32::new(0),
        }
    }

    /// Admits or refuses one request.
    pub fn admit(&self) -> Result<Permit<'_>, BlockReason> {
        if self.fraction > 0 {
            let old = self.credit.fetch_add(self.fraction, Ordering::Relaxed);
            if (old.wrapping_add(self.fraction) >> 32) != (old >> 32) {
                return Err(BlockReason::Fraction);
            }
        }
        let now = self.in_flight.fetch_add(1, Ordering::Relaxed);
        let permit = Permit { gate: self };
        match self.cap {
            Some(cap) if now >= cap => Err(BlockReason::InFlightCap),
            _ => Ok(permit),
        }
    }

    /// Requests of this class now in flight.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn blocks_the_fraction_exactly(b in 0.0f64..=1.0, n in 1usize..5000) {
            let g = Gate::new(b, None);
            let blocked = (0..n).filter(|_| g.admit().is_err()).count();
            let want = b * n as f64;
            prop_assert!((blocked as f64 - want).abs() <= 1.0, "{} vs {}", blocked, want);
        }
    }

    #[test]
    fn cap_counts_permits_in_flight() {
        let g = Gate::new(0.0, Some(2));
        let a = g.admit().unwrap();
        let _b = g.admit().unwrap();
        assert_eq!(g.admit().unwrap_err(), BlockReason::InFlightCap);
        drop(a);
        assert!(g.admit().is_ok());
        assert_eq!(g.in_flight(), 1);
    }
}
