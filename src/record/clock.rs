//! The profiler's clock: monotonic nanoseconds since the first reading.
//!
//! Read only on sampled or contended acquisitions, never on the fast path.

use std::sync::OnceLock;
use std::time::Instant;

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Monotonic nanoseconds since the clock's epoch; never 0, so that 0 can mean
/// "no timestamp".
#[inline]
pub(crate) fn now() -> u64 {
    let epoch = EPOCH.get_or_init(Instant::now);
    (epoch.elapsed().as_nanos() as u64).saturating_add(1)
}

/// Nanoseconds elapsed between two readings of [`now`] (0 if out of order).
#[inline]
pub(crate) fn between(start: u64, end: u64) -> u64 {
    end.saturating_sub(start)
}
