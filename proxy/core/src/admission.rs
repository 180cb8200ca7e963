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

/// Admission state for one (service, class). Fraction and cap can be changed while requests hold
/// permits, so a new plan keeps counting the requests already in flight.
#[derive(Debug)]
pub struct Gate {
    /// Fraction in fixed point (0..=2^32).
    fraction: AtomicU64,
    credit: AtomicU64,
    /// `u32::MAX` means no cap.
    cap: AtomicU32,
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
        let g = Self {
            fraction: AtomicU64::new(0),
            credit: AtomicU64::new(0),
            cap: AtomicU32::new(u32::MAX),
            in_flight: AtomicU32::new(0),
        };
        g.set(fraction, cap);
        g
    }

    /// Changes the fraction and the cap.
    pub fn set(&self, fraction: f64, cap: Option<u32>) {
        self.fraction
            .store((fraction.clamp(0.0, 1.0) * ONE) as u64, Ordering::Relaxed);
        self.cap.store(cap.unwrap_or(u32::MAX), Ordering::Relaxed);
    }

    /// Admits or refuses one request.
    pub fn admit(&self) -> Result<Permit<'_>, BlockReason> {
        let fraction = self.fraction.load(Ordering::Relaxed);
        if fraction > 0 {
            let old = self.credit.fetch_add(fraction, Ordering::Relaxed);
            if (old.wrapping_add(fraction) >> 32) != (old >> 32) {
                return Err(BlockReason::Fraction);
            }
        }
        let now = self.in_flight.fetch_add(1, Ordering::Relaxed);
        let permit = Permit { gate: self };
        if now >= self.cap.load(Ordering::Relaxed) {
            return Err(BlockReason::InFlightCap);
        }
        Ok(permit)
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
