//! The per-thread sampling decision.
//!
//! Each thread keeps a countdown to its next sampled acquisition. The gaps are
//! drawn from a geometric distribution with mean `100 / capture_pct`, so every
//! acquisition has the same probability of being sampled whatever pattern the
//! program follows (a loop alternating two locks sees both sampled), and the
//! common case is one thread-local decrement: no clock, no shared write.
//!
//! # The sampling budget
//!
//! A sampled event costs a stack walk and a hand-off, some hundreds of
//! nanoseconds, so at a fixed rate the cost grows with the lock rate: at 1 %
//! of a 5 ns lock it alone would add 20 %. Each thread therefore also keeps
//! to a budget of sampled acquisitions per second of its own CPU time (wall
//! time where that cannot be read). Time is read only at a
//! sampled acquisition: every [`WINDOW_NS`] the thread compares how many it
//! sampled with its share of the budget, and sets how many times its gaps
//! are lengthened, `2^shift`, so that the next window fits (the first
//! window's excess is corrected as soon as it is seen). A gap drawn with
//! probability `p / 2^shift` makes its sampled acquisition stand for
//! `2^shift` times as many as one drawn at `p`: the event carries `shift`,
//! and the estimator weighs it by `2^shift` (Horvitz–Thompson), so totals
//! stay unbiased whatever the budget does. The probability in force only
//! ever depends on acquisitions before the gap, never on the one sampled.

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

use crossbeam_utils::CachePadded;

/// The running profiler's session number, 0 when none runs. The one shared
/// read on the locking path, on cache lines of its own (128 bytes on x86,
/// whose prefetcher pulls lines in pairs): the linker had put it on
/// one line with the list that sampled waiters of read-write and reentrant
/// locks lock and write (`blame::WATCHED`).
pub(super) static SESSION: CachePadded<AtomicU32> = CachePadded::new(AtomicU32::new(0));

/// `capture_pct` of the running session, as `f64` bits.
static CAPTURE_PCT: AtomicU64 = AtomicU64::new(0);

/// Sampled acquisitions allowed per [`WINDOW_NS`] and thread; 0 means no
/// budget.
static BUDGET_PER_WINDOW: AtomicU64 = AtomicU64::new(0);
/// [`WINDOW_NS`] in clock ticks.
static WINDOW_TICKS: AtomicU64 = AtomicU64::new(u64::MAX);

/// The budget's window: short, so that a burst is corrected within it.
pub(crate) const WINDOW_NS: u64 = 10_000_000;

/// The most a gap is lengthened: `2^MAX_SHIFT`.
pub(crate) const MAX_SHIFT: u8 = 24;

struct Local {
    /// The session the countdown was drawn for (high 32 bits) and the
    /// acquisitions left before the next sampled one (low 32 bits; 1 means
    /// "the next one"). One word, so the fast path is one load and one store.
    state: Cell<u64>,
    rng: Cell<u64>,
    /// The budget: gaps are drawn with probability `p / 2^shift`.
    shift: Cell<u8>,
    /// The shift the current gap was drawn with: the weight of the
    /// acquisition it ends.
    drawn_shift: Cell<u8>,
    /// The current window: its start (clock ticks) and the acquisitions
    /// sampled in it.
    window_start: Cell<u64>,
    window_events: Cell<u64>,
    /// The thread's CPU time (ns) when the window started; 0 where it
    /// cannot be read (then the window's wall time stands in for it).
    window_cpu_ns: Cell<u64>,
    /// Set while profiler code runs on this thread, so that anything it
    /// triggers (a user allocator taking a profiled lock) is never recorded.
    busy: Cell<bool>,
}

thread_local! {
    static LOCAL: Local = const {
        Local {
            state: Cell::new(0),
            rng: Cell::new(0),
            shift: Cell::new(0),
            drawn_shift: Cell::new(0),
            window_start: Cell::new(0),
            window_events: Cell::new(0),
            window_cpu_ns: Cell::new(0),
            busy: Cell::new(false),
        }
    };
}

/// Publishes a new session's sampling rate and budget (sampled acquisitions
/// per second of a thread's CPU time, 0 for none); call before storing
/// `SESSION`.
pub(super) fn configure(capture_pct: f64, budget_per_sec: u64, ticks_per_sec: f64) {
    CAPTURE_PCT.store(capture_pct.to_bits(), Relaxed);
    let per_window = (budget_per_sec as f64 * WINDOW_NS as f64 / 1e9).ceil() as u64;
    BUDGET_PER_WINDOW.store(if budget_per_sec == 0 { 0 } else { per_window.max(1) }, Relaxed);
    let window = ticks_per_sec * WINDOW_NS as f64 / 1e9;
    WINDOW_TICKS.store(if window >= 1.0 { window as u64 } else { 1 }, Relaxed);
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

/// An unsampled acquisition's place in this thread's countdown, from
/// [`peek`]; hand it to [`commit`] once the lock is held.
#[derive(Clone, Copy)]
pub(crate) struct Countdown(u64);

/// Reads this thread's countdown: `Some` when this acquisition is not
/// sampled, `None` when the countdown has run out or was drawn for another
/// session (then [`expired`] decides).
///
/// Only a load: the store is left to [`commit`], after the lock's atomic
/// instruction, which would otherwise wait for it to drain (measured: a
/// thread-local decrement before the lock's CAS costs about 3 ns, after it
/// nothing).
#[inline(always)]
pub(crate) fn peek(session: u32) -> Option<Countdown> {
    let state = LOCAL.try_with(|l| l.state.get()).unwrap_or(0);
    let this_session = (session as u64) << 32;
    // The same session, and at least 2 left.
    (state.wrapping_sub(this_session).wrapping_sub(2) < u32::MAX as u64 - 1).then_some(Countdown(state))
}

/// Counts the acquisition that [`peek`] let through; call once the lock is
/// held.
#[inline(always)]
pub(crate) fn commit(countdown: Countdown) {
    let _ = LOCAL.try_with(|l| l.state.set(countdown.0 - 1));
}

/// [`peek`] and [`commit`] in one, for the async locks: true when this
/// acquisition is to be sampled.
#[cfg(feature = "tokio")]
#[inline(always)]
pub(crate) fn tick(session: u32) -> bool {
    match peek(session) {
        Some(countdown) => {
            commit(countdown);
            false
        }
        None => expired(session),
    }
}

/// The slow side of [`peek`]: counts this acquisition and returns true when it
/// is to be sampled.
#[cold]
#[inline(never)]
pub(crate) fn expired(session: u32) -> bool {
    LOCAL.try_with(|l| countdown_expired(l, session)).unwrap_or(false)
}

fn countdown_expired(l: &Local, session: u32) -> bool {
    let pct = capture_pct();
    let this_session = (session as u64) << 32;
    let state = l.state.get();
    let set_left = |left: u32| l.state.set(this_session | left as u64);
    if state >> 32 != session as u64 {
        // First acquisition of this thread in this session: start a fresh
        // countdown so that a gap drawn for an old rate does not carry over.
        if l.rng.get() == 0 {
            l.rng.set(seed());
        }
        l.shift.set(0);
        l.window_start.set(0);
        l.window_events.set(0);
        l.drawn_shift.set(0);
        let gap = draw_gap(l, pct);
        if gap > 1 {
            set_left(gap - 1);
            return false;
        }
    }
    // This acquisition is the sampled one; it weighs as its gap was drawn.
    let sampled = pct > 0.0 && !l.busy.get();
    if sampled {
        keep_to_budget(l);
    }
    CURRENT_SHIFT.with(|c| c.set(l.drawn_shift.get()));
    l.drawn_shift.set(l.shift.get());
    set_left(draw_gap(l, pct_in_force(pct, l.shift.get())));
    sampled
}

thread_local! {
    /// The weight (`2^shift`) of this thread's sampled acquisition in
    /// progress, for its events.
    static CURRENT_SHIFT: Cell<u8> = const { Cell::new(0) };
}

/// The shift of the sampled acquisition this thread is recording: its events
/// stand for `2^shift` sampled at the configured rate.
pub(crate) fn current_shift() -> u8 {
    CURRENT_SHIFT.try_with(Cell::get).unwrap_or(0)
}

fn pct_in_force(pct: f64, shift: u8) -> f64 {
    if shift == 0 {
        pct
    } else {
        pct / (1u64 << shift) as f64
    }
}

/// Counts one sampled acquisition against this thread's budget and sets the
/// shift for the gaps drawn from now on.
///
/// The budget is per second of the thread's CPU time where that can be read
/// (Linux): what a sampled event costs is CPU, and a thread that shares a
/// core with many others gets that much less of it. Per second of wall
/// time, 32 threads on 2 cores each kept to 10,000 a second spent 16 % of
/// the machine on sampled events without frame pointers, and a contended
/// lock's throughput fell to 0.70-0.77x `parking_lot`'s (0.74-0.87x at
/// capture 0, 0.81-0.87x with a budget of 1,000; 0.79-0.86x per CPU
/// second). The window itself is still timed by the clock (read only here);
/// the thread's CPU time is read once a window, at its end.
fn keep_to_budget(l: &Local) {
    let budget = BUDGET_PER_WINDOW.load(Relaxed);
    if budget == 0 {
        return;
    }
    count_in_window(
        l,
        budget,
        WINDOW_TICKS.load(Relaxed),
        super::clock::now(),
        super::clock::thread_cpu_ns,
    );
}

/// [`keep_to_budget`] at clock reading `now` with a window of `window`
/// ticks; `cpu_ns` reads the thread's CPU time (0: unknown).
fn count_in_window(l: &Local, budget: u64, window: u64, now: u64, cpu_ns: impl FnOnce() -> u64) {
    let events = l.window_events.get() + 1;
    let elapsed = now.saturating_sub(l.window_start.get());
    if l.window_start.get() == 0 || elapsed >= window || events > budget {
        let cpu_ns = cpu_ns();
        // The rate of sampled acquisitions at shift 0, as this window saw
        // it, decides the next shift: lengthen gaps by the power of two that
        // brings it under budget, or shorten them as the rate falls.
        if l.window_start.get() != 0 {
            let at_zero = events as f64 * (1u64 << l.shift.get()) as f64;
            let used = match (l.window_cpu_ns.get(), cpu_ns) {
                // The share of a window's length this thread ran, counted
                // as at least `MIN_CPU_SHARE` of the time that passed.
                (start, end) if start != 0 && end > start => ((end - start) as f64 / WINDOW_NS as f64
                    * window as f64)
                    .max(elapsed as f64 * MIN_CPU_SHARE),
                _ => elapsed as f64,
            };
            let per_window = at_zero * window as f64 / used.max(1.0);
            l.shift.set(shift_for(per_window, budget));
        }
        l.window_start.set(now);
        l.window_cpu_ns.set(cpu_ns);
        l.window_events.set(0);
    } else {
        l.window_events.set(events);
    }
}

/// The least share of the time that passed a thread's budget counts it as
/// having run: a thread that runs little (a request now and then) keeps up
/// to 1 % of its budget per second of wall time (100 sampled acquisitions a
/// second by default, about 0.01 % of a core), where a budget of its CPU
/// time alone would thin its few samples further for no saving that shows.
const MIN_CPU_SHARE: f64 = 0.01;

/// The shift that brings `per_window` sampled acquisitions (at shift 0)
/// under `budget`: the power of two to lengthen gaps by, 0 when within it.
fn shift_for(per_window: f64, budget: u64) -> u8 {
    let needed = (per_window / budget as f64).log2().ceil();
    if needed.is_nan() || needed <= 0.0 {
        0
    } else {
        (needed as u8).min(MAX_SHIFT)
    }
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
    // `ln_1p(-p)`, not `ln(1 - p)`: below p = 1e-16, `1 - p` rounds to 1,
    // its log to 0, and every gap came out as 1 (everything sampled).
    let gap = 1.0 + (u.ln() / (-p).ln_1p()).floor();
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

/// Whether profiler code is running on this thread (see [`enter`]).
pub(crate) fn inside_profiler() -> bool {
    LOCAL.try_with(|l| l.busy.get()).unwrap_or(true)
}

/// Marks this thread as the profiler's own (its worker, its upload thread)
/// for the rest of its life: nothing it does is ever sampled, whatever it
/// calls (a logger, an allocator) and whenever (thread-local destructors
/// included). Call first thing on the thread; [`enter`] on it then returns
/// `None`.
pub(crate) fn mark_profiler_thread() {
    let _ = LOCAL.try_with(|l| l.busy.set(true));
}

/// Runs `f` with this thread marked as inside the profiler: nothing it does is
/// sampled. Returns `None` if the thread is already inside (no recursion) or
/// is being torn down.
#[inline(always)]
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

/// Runs `f` so that no lock it takes on this thread is sampled, nested or
/// not: for the profiler's own bookkeeping that runs on a user's thread
/// outside [`enter`] (a tracer integration's tables), which may allocate,
/// and a global allocator may take a profiled lock.
#[cfg_attr(not(feature = "opentelemetry"), allow(dead_code))]
pub(crate) fn unrecorded<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = LOCAL.try_with(|l| l.busy.set(self.0));
        }
    }
    let previous = LOCAL.try_with(|l| l.busy.replace(true)).unwrap_or(true);
    let _restore = Restore(previous);
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local_with_seed(seed: u64) -> Local {
        Local {
            state: Cell::new(0),
            rng: Cell::new(seed),
            shift: Cell::new(0),
            drawn_shift: Cell::new(0),
            window_start: Cell::new(0),
            window_events: Cell::new(0),
            window_cpu_ns: Cell::new(0),
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
    fn tiny_rates_draw_long_gaps_not_gaps_of_one() {
        let l = local_with_seed(7);
        // Rounding `1 - p` to 1 used to make every gap 1 at these rates.
        for pct in [1e-20, f64::MIN_POSITIVE, 1e-14] {
            assert!((0..1000).all(|_| draw_gap(&l, pct) > 1_000_000), "pct {pct}");
        }
        // At the smallest rate allowed (1e-6 %), the gaps still average
        // 10^8, well inside the 2^32 a gap can hold.
        let n = 20_000;
        let total: u64 = (0..n).map(|_| draw_gap(&l, 1e-6) as u64).sum();
        let mean = total as f64 / n as f64;
        assert!((mean - 1e8).abs() / 1e8 < 0.05, "mean gap {mean}");
    }

    #[test]
    fn a_profiler_thread_stays_inside_the_profiler_for_life() {
        std::thread::spawn(|| {
            assert_eq!(enter(|| ()), Some(()));
            mark_profiler_thread();
            assert_eq!(enter(|| ()), None);
            assert_eq!(enter(|| ()), None, "still marked after a refused enter");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn unrecorded_code_runs_even_nested_and_restores_the_flag() {
        std::thread::spawn(|| {
            assert!(!inside_profiler());
            let nested = unrecorded(|| {
                assert!(inside_profiler());
                let inner = unrecorded(inside_profiler);
                (inner, inside_profiler(), enter(|| ()))
            });
            assert_eq!(nested, (true, true, None));
            assert!(!inside_profiler());
            assert_eq!(enter(|| unrecorded(|| 5)), Some(5));
            assert!(!inside_profiler());
        })
        .join()
        .unwrap();
    }

    /// `events` sampled acquisitions in one window of `window` ticks, the
    /// thread running `cpu_share` of it (`None`: its CPU time unknown);
    /// returns the shift set for the next window.
    fn shift_after(events: u64, cpu_share: Option<f64>) -> u8 {
        let l = local_with_seed(1);
        let (budget, window) = (100, 1_000_000);
        let cpu_at = |wall: u64| {
            move || {
                cpu_share.map_or(0, |share| {
                    1_000 + (share * (wall - 1) as f64 / window as f64 * WINDOW_NS as f64) as u64
                })
            }
        };
        // Opens the window.
        count_in_window(&l, budget, window, 1, cpu_at(1));
        for i in 0..events - 1 {
            count_in_window(&l, budget, window, 2 + i, || {
                panic!("read only at a window's end")
            });
        }
        // The window's last sampled acquisition ends it.
        count_in_window(&l, budget, window, 1 + window, cpu_at(1 + window));
        l.shift.get()
    }

    #[test]
    fn the_budget_is_per_second_of_the_threads_own_cpu_time() {
        // 60 sampled in a window: within a budget of 100 for a thread that
        // ran all of it, or whose CPU time is unknown (wall time then).
        assert_eq!(shift_after(60, Some(1.0)), 0);
        assert_eq!(shift_after(60, None), 0);
        // The same 60 from a thread that ran a tenth of the window (sharing
        // its core with nine others): 600 a window of its own time, brought
        // under 100 by gaps 8 times as long.
        assert_eq!(shift_after(60, Some(0.1)), 3);
        assert_eq!(shift_after(60, Some(0.5)), 1);
        // A thread that ran a thousandth of the window counts as having run
        // 1 % of it: one sampled is 100 a window of that, within budget
        // (1,000 a window of its own time, which would have set 4); three
        // are 300, brought under 100 by gaps 4 times as long.
        assert_eq!(shift_after(1, Some(0.001)), 0);
        assert_eq!(shift_after(3, Some(0.001)), 2);
    }

    #[test]
    fn shifts_are_the_power_of_two_that_fits_the_budget() {
        assert_eq!(shift_for(50.0, 100), 0);
        assert_eq!(shift_for(100.0, 100), 0);
        assert_eq!(shift_for(101.0, 100), 1);
        assert_eq!(shift_for(400.0, 100), 2);
        assert_eq!(shift_for(f64::INFINITY, 100), MAX_SHIFT);
        assert_eq!(shift_for(f64::NAN, 100), 0);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn thread_cpu_time_counts_work_not_sleep() {
        use crate::record::clock::thread_cpu_ns;
        let start = thread_cpu_ns();
        assert!(start > 0, "CLOCK_THREAD_CPUTIME_ID unreadable");
        std::thread::sleep(std::time::Duration::from_millis(50));
        let slept = thread_cpu_ns() - start;
        assert!(slept < 25_000_000, "50 ms asleep counted as {slept} ns of CPU");
        // Work until 5 ms of CPU time have passed (however loaded the
        // machine): the clock advances with work.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let before = thread_cpu_ns();
        let mut x = 1u64;
        while thread_cpu_ns() - before < 5_000_000 {
            for _ in 0..10_000 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
            assert!(
                std::time::Instant::now() < deadline,
                "thread CPU time did not advance with work"
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
