//! The per-thread sampling decision.
//!
//! Each thread keeps a countdown to its next sampled acquisition. The gaps are
//! drawn from a geometric distribution with mean `100 / capture_pct`, so every
//! acquisition has the same probability of being sampled whatever pattern the
//! program follows (a loop alternating two locks sees both sampled), and the
//! common case is one thread-local decrement: no clock, no shared write.

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

/// The running profiler's session number, 0 when none runs. The one shared
/// read on the locking path.
pub(crate) static SESSION: AtomicU32 = AtomicU32::new(0);

/// `capture_pct` of the running session, as `f64` bits.
static CAPTURE_PCT: AtomicU64 = AtomicU64::new(0);

struct Local {
    /// Acquisitions left before the next sampled one; 1 means "the next one".
    countdown: Cell<u32>,
    /// The session the countdown was drawn for.
    session: Cell<u32>,
    rng: Cell<u64>,
    /// Set while profiler code runs on this thread, so that anything it
    /// triggers (a user allocator taking a profiled lock) is never recorded.
    busy: Cell<bool>,
}

thread_local! {
    static LOCAL: Local = const {
        Local { countdown: Cell::new(0), session: Cell::new(0), rng: Cell::new(0), busy: Cell::new(false) }
    };
}

/// Publishes a new session's sampling rate; call before storing `SESSION`.
pub(crate) fn configure(capture_pct: f64) {
    CAPTURE_PCT.store(capture_pct.to_bits(), Relaxed);
}

pub(crate) fn capture_pct() -> f64 {
    f64::from_bits(CAPTURE_PCT.load(Relaxed))
}

/// The running session, or `None`.
#[inline(always)]
pub(crate) fn session() -> Option<u32> {
    match SESSION.load(Relaxed) {
        0 => None,
        s => Some(s),
    }
}

/// Counts one acquisition against this thread's countdown; true when this
/// acquisition is to be sampled.
#[inline(always)]
pub(crate) fn tick(session: u32) -> bool {
    // No clock and no shared write here: this runs on every acquisition while
    // a profiler is running.
    LOCAL
        .try_with(|l| {
            let left = l.countdown.get();
            if left > 1 && l.session.get() == session {
                l.countdown.set(left - 1);
                false
            } else {
                countdown_expired(l, session)
            }
        })
        .unwrap_or(false)
}

#[cold]
#[inline(never)]
fn countdown_expired(l: &Local, session: u32) -> bool {
    let pct = capture_pct();
    if l.session.get() != session {
        // First acquisition of this thread in this session: start a fresh
        // countdown so that a gap drawn for an old rate does not carry over.
        l.session.set(session);
        if l.rng.get() == 0 {
            l.rng.set(seed());
        }
        let gap = draw_gap(l, pct);
        if gap > 1 {
            l.countdown.set(gap - 1);
            return false;
        }
    }
    // This acquisition is the sampled one; draw the gap to the next.
    l.countdown.set(draw_gap(l, pct));
    pct > 0.0 && !l.busy.get()
}

/// A geometric gap (number of acquisitions up to and including the next
/// sampled one) for a sampling probability of `pct` percent.
fn draw_gap(l: &Local, pct: f64) -> u32 {
    if pct >= 100.0 {
        return 1;
    }
    if pct <= 0.0 || pct.is_nan() {
        return u32::MAX;
    }
    let p = pct / 100.0;
    // Uniform in (0, 1]: never 0, so ln(u) is finite.
    let u = ((next_random(l) >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    let gap = 1.0 + (u.ln() / (1.0 - p).ln()).floor();
    if gap >= u32::MAX as f64 {
        u32::MAX
    } else {
        gap.max(1.0) as u32
    }
}

fn next_random(l: &Local) -> u64 {
    // xorshift64*: fast, and good enough to spread sampling gaps.
    let mut x = l.rng.get();
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    l.rng.set(x);
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

fn seed() -> u64 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut h = RandomState::new().build_hasher();
    h.write_usize(&h as *const _ as usize);
    h.write_u64(super::clock::now());
    h.finish() | 1
}

/// Runs `f` with this thread marked as inside the profiler: nothing it does is
/// sampled. Returns `None` if the thread is already inside (no recursion) or
/// is being torn down.
pub(crate) fn enter<R>(f: impl FnOnce() -> R) -> Option<R> {
    struct Reset<'a>(&'a Cell<bool>);
    impl Drop for Reset<'_> {
        fn drop(&mut self) {
            self.0.set(false);
        }
    }
    LOCAL
        .try_with(|l| {
            if l.busy.replace(true) {
                return None;
            }
            let _reset = Reset(&l.busy);
            Some(f())
        })
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local_with_seed(seed: u64) -> Local {
        Local {
            countdown: Cell::new(0),
            session: Cell::new(0),
            rng: Cell::new(seed),
            busy: Cell::new(false),
        }
    }

    #[test]
    fn gaps_average_to_the_inverse_of_the_rate() {
        let l = local_with_seed(0x1234_5678);
        for pct in [1.0, 10.0, 50.0] {
            let n = 200_000;
            let total: u64 = (0..n).map(|_| draw_gap(&l, pct) as u64).sum();
            let mean = total as f64 / n as f64;
            let expected = 100.0 / pct;
            assert!(
                (mean - expected).abs() / expected < 0.03,
                "pct {pct}: mean gap {mean}, expected {expected}"
            );
        }
    }

    #[test]
    fn full_capture_samples_every_time_and_zero_never() {
        let l = local_with_seed(42);
        assert!((0..1000).all(|_| draw_gap(&l, 100.0) == 1));
        assert!((0..1000).all(|_| draw_gap(&l, 0.0) == u32::MAX));
    }
}
