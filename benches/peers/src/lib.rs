//! What the criterion bench (`benches/peers.rs`) and the one-shot summary
//! (`src/main.rs`) share: each contender's lock behind one small trait, the
//! instrumentation each peer needs switched on, and the threaded driver of
//! lockprof's benchmark 2.
//!
//! What each contender records per acquisition:
//! - lockprof (`DEFAULT_CAPTURE_PCT`): exact per-lock counts and contended
//!   wait; the sampled acquisitions and their releases with a call stack,
//!   thread and hold time; pprof output (discarded here).
//! - locktick: wait and hold time of every guard, per lock and call site
//!   (two clock reads, an `Arc<Path>` allocation and a global map update under
//!   a std mutex per guard); no stacks.
//! - hotpath (time sampling at its default, 100 %): wait and hold time of
//!   every acquisition, sent as an event to a per-thread queue that its
//!   worker drains into histograms; no stacks.
//! - tracing-mutex: no timing; a thread-local stack of held locks, and the
//!   global lock-order graph when a lock is taken while another is held
//!   (never, in these benchmarks).

use std::sync::{Barrier, OnceLock};
use std::time::{Duration, Instant};

use lockprof::{EncodedProfile, Export, ExportError, ProfiledMutex, ProfiledRwLock, Profiler};

pub use lockprof::ProfilerHandle;

/// hotpath's worker drains each thread's event queue every 50 ms by
/// default, at most 65,536 events a sweep: far fewer than these loops
/// produce, so its backlog (80 bytes an event) would grow by gigabytes.
/// hotpath's own advice for high-traffic programs is a shorter interval.
const HOTPATH_DRAIN_INTERVAL_MS: &str = "1";

/// Sets up the process-wide instrumentation: hotpath's guard (kept for the
/// whole run) and a lockprof profiler at the default capture rate, its
/// profiles discarded. Call first thing in `main`, before any other thread
/// exists: it sets environment variables that hotpath reads.
pub fn instrument() -> ProfilerHandle {
    static HOTPATH: OnceLock<()> = OnceLock::new();
    HOTPATH.get_or_init(|| {
        if std::env::var_os("HOTPATH_DRAIN_INTERVAL_MS").is_none() {
            std::env::set_var("HOTPATH_DRAIN_INTERVAL_MS", HOTPATH_DRAIN_INTERVAL_MS);
        }
        // Its HTTP metrics endpoint is no part of the measurement.
        if std::env::var_os("HOTPATH_METRICS_SERVER_OFF").is_none() {
            std::env::set_var("HOTPATH_METRICS_SERVER_OFF", "1");
        }
        hotpath::HotpathGuardBuilder::new("peers")
            .format(hotpath::Format::None)
            .build_with_shutdown(Duration::ZERO);
    });
    Profiler::builder()
        .capture_pct(lockprof::DEFAULT_CAPTURE_PCT)
        .export(Discard)
        .start()
        .expect("no other lockprof profiler runs")
}

struct Discard;

impl Export for Discard {
    fn export(&mut self, _profile: &EncodedProfile) -> Result<(), ExportError> {
        Ok(())
    }
    fn describe(&self) -> String {
        "discarded".into()
    }
}

/// A contender's mutex, driven the same way for all.
pub trait PeerMutex<T>: Sync + Sized {
    /// The contender's name in reports.
    const NAME: &'static str;
    /// A new lock; locktick keys its statistics by the caller's location.
    #[track_caller]
    fn new(value: T) -> Self;
    /// Runs `f` with the lock held.
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R;
}

/// A contender's reader-writer lock, read side only.
pub trait PeerRwLock<T>: Sync + Sized {
    /// The contender's name in reports.
    const NAME: &'static str;
    /// A new lock.
    #[track_caller]
    fn new(value: T) -> Self;
    /// Runs `f` with a read lock held.
    fn read_with<R>(&self, f: impl FnOnce(&T) -> R) -> R;
}

macro_rules! peer {
    ($name:literal, $mutex:ty, $new_mutex:expr, $lock:ident => $guard:expr,
     $rwlock:ty, $new_rwlock:expr, $read:ident => $read_guard:expr) => {
        impl<T: Send + Sync> PeerMutex<T> for $mutex {
            const NAME: &'static str = $name;
            #[inline]
            #[track_caller]
            #[allow(deprecated)]
            fn new(value: T) -> Self {
                $new_mutex(value)
            }
            #[inline]
            fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
                let $lock = self;
                f(&mut *$guard)
            }
        }

        impl<T: Send + Sync> PeerRwLock<T> for $rwlock {
            const NAME: &'static str = $name;
            #[inline]
            #[track_caller]
            #[allow(deprecated)]
            fn new(value: T) -> Self {
                $new_rwlock(value)
            }
            #[inline]
            fn read_with<R>(&self, f: impl FnOnce(&T) -> R) -> R {
                let $read = self;
                f(&*$read_guard)
            }
        }
    };
}

peer!(
    "parking_lot",
    parking_lot::Mutex<T>, parking_lot::Mutex::new, l => l.lock(),
    parking_lot::RwLock<T>, parking_lot::RwLock::new, l => l.read()
);
peer!(
    "lockprof",
    ProfiledMutex<T>, ProfiledMutex::new, l => l.lock().unwrap(),
    ProfiledRwLock<T>, ProfiledRwLock::new, l => l.read().unwrap()
);
peer!(
    "locktick",
    locktick::parking_lot::Mutex<T>, locktick::parking_lot::Mutex::new, l => l.lock(),
    locktick::parking_lot::RwLock<T>, locktick::parking_lot::RwLock::new, l => l.read()
);
peer!(
    "hotpath",
    hotpath::wrap::parking_lot::Mutex<T>,
    |v| hotpath::mutex!(parking_lot::Mutex::new(v)),
    l => l.lock(),
    hotpath::wrap::parking_lot::RwLock<T>,
    |v| hotpath::rw_lock!(parking_lot::RwLock::new(v)),
    l => l.read()
);
peer!(
    "tracing-mutex",
    tracing_mutex::parkinglot::tracing::Mutex<T>,
    tracing_mutex::parkinglot::tracing::Mutex::new,
    l => l.lock(),
    tracing_mutex::parkinglot::tracing::RwLock<T>,
    tracing_mutex::parkinglot::tracing::RwLock::new,
    l => l.read()
);

/// The locks of benchmark 2, each created on its own line: locktick keeps
/// one statistics entry, behind one std mutex, per creation site.
pub fn locks<L: PeerMutex<[u64; 4]>>(n: usize) -> Vec<L> {
    assert!((1..=2).contains(&n), "benchmark 2 uses 1 or 2 locks");
    let mut all = vec![L::new([0; 4])];
    if n == 2 {
        all.push(L::new([0; 4]));
    }
    all
}

/// Benchmark 2's critical section: a few arithmetic operations.
#[inline(always)]
pub fn work(v: &mut [u64; 4], i: u64) {
    v[(i % 4) as usize] = v[(i % 4) as usize].wrapping_mul(31).wrapping_add(i);
}

/// One acquisition of benchmark 2 by thread `t`, its `i`th: locks are taken
/// in turn, threads starting on different ones.
#[inline(always)]
pub fn contended_op<L: PeerMutex<[u64; 4]>>(locks: &[L], t: usize, i: u64) {
    locks[(t + i as usize) % locks.len()].with(|v| work(v, i));
}

/// `threads` threads doing at least `total` acquisitions in all through
/// `op`; the time from their common start to the last one's end, and the
/// number of acquisitions done.
pub fn threaded(threads: usize, total: u64, op: &(dyn Fn(usize, u64) + Sync)) -> (Duration, u64) {
    let per_thread = total.div_ceil(threads as u64).max(1);
    let start = Barrier::new(threads + 1);
    let elapsed = std::thread::scope(|s| {
        for t in 0..threads {
            let start = &start;
            s.spawn(move || {
                start.wait();
                for i in 0..per_thread {
                    op(t, i);
                }
            });
        }
        start.wait();
        Instant::now()
    })
    .elapsed();
    (elapsed, per_thread * threads as u64)
}
