//! The profiler's clock: monotonic nanoseconds.
//!
//! Read only on sampled acquisitions (and contended async ones), never on the
//! fast path.

#[cfg(not(unix))]
use std::sync::OnceLock;
#[cfg(not(unix))]
use std::time::Instant;

#[cfg(not(unix))]
static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Monotonic nanoseconds; never 0, so that 0 can mean "no timestamp".
/// Only differences of two readings mean anything.
#[cfg(unix)]
#[inline]
pub(crate) fn now() -> u64 {
    // Straight to the vDSO: `Instant` adds an epoch lookup and 128-bit
    // arithmetic to a path that runs twice per sampled acquisition.
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
        .max(1)
}

/// Monotonic nanoseconds since the clock's epoch; never 0, so that 0 can mean
/// "no timestamp".
#[cfg(not(unix))]
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
