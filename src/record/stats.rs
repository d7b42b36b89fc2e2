//! Exact per-lock totals, kept beside the sampled events.
//!
//! Every lock instance gets a small heap block the first time it is acquired
//! while a profiler runs. Exclusive acquisitions are counted in it with a plain
//! load and store (the lock is held, so no other thread writes the counter).
//! Every contended acquisition (one whose first try failed) also adds its
//! measured wait, so that each lock's total wait is exact. The recorder reads the blocks at each
//! flush, so the per-lock counts in a profile are exact while the split across
//! call stacks comes from the sampled events.

use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering::*};
use std::sync::Arc;

use super::forksafe::ForkSafeMutex;
use super::Mode;
use crate::site::{LockSite, SiteKey};

/// Totals for one acquisition mode of one lock instance.
#[derive(Default, Debug)]
pub(crate) struct ModeStats {
    /// Acquisitions; exact for exclusive modes only (see [`Mode::counted`]).
    pub(crate) acquired: AtomicU64,
    pub(crate) contended: AtomicU64,
    /// Clock ticks (see `clock`).
    pub(crate) wait_ticks: AtomicU64,
}

/// The totals of one lock instance.
#[derive(Debug)]
pub(crate) struct LockStats {
    pub(crate) site: SiteKey,
    /// The modes behind indexes 0 and 1: `[Exclusive, Read]` for mutexes,
    /// `[Write, Read]` for read-write locks.
    pub(crate) mode_of: [Mode; 2],
    /// Indexed by [`Mode::index`].
    pub(crate) modes: [ModeStats; 2],
    /// What the recorder has already reported, per mode: acquired, contended,
    /// wait. Only the recorder thread touches these.
    pub(crate) reported: [[AtomicU64; 3]; 2],
    /// Set at the lock's first contended acquisition (until then every wait
    /// was 0): from then on its total wait is exact.
    pub(crate) waits_measured: AtomicBool,
    /// Set (Release) when the lock is dropped, after its last count; read
    /// (Acquire) by the recorder before the counters, so that a block seen
    /// retired is read complete before it is forgotten.
    pub(crate) retired: AtomicBool,
}

/// A lock's pointer to its [`LockStats`], allocated on first use while
/// profiling. Owns one strong count; the registry owns another.
pub(crate) struct StatsSlot(AtomicPtr<LockStats>);

/// Every registered block, for the recorder to read. Not a profiled lock.
static REGISTRY: ForkSafeMutex<Vec<Arc<LockStats>>> = ForkSafeMutex::new(Vec::new);

/// The registry's lock, for the fault-injection tests.
#[cfg(feature = "fault-injection")]
pub(crate) fn hold_registry() -> impl Drop {
    REGISTRY.lock()
}

/// In a forked child, before it starts a profiler: the parent's profiler
/// thread may have held the registry at the fork (it does during every
/// flush). The blocks are kept when it was free, so the locks copied from the
/// parent go on being counted exactly; when it was held, those locks' counts
/// are estimated from their samples in the child, as shared reads' are.
pub(crate) fn after_fork() {
    REGISTRY.renew(|blocks| blocks);
}

impl StatsSlot {
    pub(crate) const fn new() -> Self {
        StatsSlot(AtomicPtr::new(ptr::null_mut()))
    }

    /// Counts one acquisition in `mode`. Call with the lock held in that mode.
    #[inline(always)]
    pub(crate) fn count(&self, site: &LockSite, mode: Mode) {
        if !mode.counted() {
            return;
        }
        let stats = self.get(site, mode);
        let c = &stats.modes[mode.index()].acquired;
        // A plain read-modify-write: the exclusive lock is held, so no other
        // thread writes this counter now, and the recorder only reads it.
        c.store(c.load(Relaxed).wrapping_add(1), Relaxed);
    }

    /// Counts one acquisition in `mode` of a lock that several holders can
    /// hold at once (a semaphore): an atomic add, so the count stays exact.
    #[cfg(feature = "tokio")]
    #[inline]
    pub(crate) fn count_shared(&self, site: &LockSite, mode: Mode) {
        if !mode.counted() {
            return;
        }
        self.get(site, mode).modes[mode.index()]
            .acquired
            .fetch_add(1, Relaxed);
    }

    /// Counts one contended acquisition that waited `wait_ticks`. Call with
    /// the lock held in `mode`.
    #[cold]
    pub(crate) fn contended(&self, site: &LockSite, mode: Mode, wait_ticks: u64) {
        let stats = self.get(site, mode);
        if !stats.waits_measured.load(Relaxed) {
            stats.waits_measured.store(true, Relaxed);
        }
        let s = &stats.modes[mode.index()];
        if mode.counted() {
            // Held exclusively, as in `count`: plain stores, so that no
            // locked instruction lengthens a critical section that other
            // threads are already queueing for.
            let add = |c: &AtomicU64, v: u64| c.store(c.load(Relaxed).wrapping_add(v), Relaxed);
            add(&s.contended, 1);
            add(&s.wait_ticks, wait_ticks);
            return;
        }
        // Shared modes can race here with each other, so these are atomic
        // read-modify-writes; they only run after a measured wait.
        s.contended.fetch_add(1, Relaxed);
        s.wait_ticks.fetch_add(wait_ticks, Relaxed);
    }

    #[inline(always)]
    fn get(&self, site: &LockSite, mode: Mode) -> &LockStats {
        let p = self.0.load(Acquire);
        if p.is_null() {
            return self.register(site, mode);
        }
        // SAFETY: a non-null pointer came from `Arc::into_raw` in `register`
        // and stays valid until `drop`, which needs `&mut self`.
        unsafe { &*p }
    }

    #[cold]
    #[inline(never)]
    fn register(&self, site: &LockSite, mode: Mode) -> &LockStats {
        let first = match mode {
            Mode::Exclusive => Mode::Exclusive,
            Mode::Read | Mode::Write => Mode::Write,
        };
        let stats = Arc::new(LockStats {
            site: site.key(),
            mode_of: [first, Mode::Read],
            modes: Default::default(),
            reported: Default::default(),
            waits_measured: AtomicBool::new(false),
            retired: AtomicBool::new(false),
        });
        let raw = Arc::into_raw(Arc::clone(&stats)) as *mut LockStats;
        match self.0.compare_exchange(ptr::null_mut(), raw, AcqRel, Acquire) {
            Ok(_) => {
                REGISTRY.lock().push(stats);
                // SAFETY: just stored; valid until `drop`.
                unsafe { &*raw }
            }
            Err(existing) => {
                // Another reader registered first: keep theirs.
                // SAFETY: `raw` came from `Arc::into_raw` above and was not
                // published.
                drop(unsafe { Arc::from_raw(raw) });
                // SAFETY: as in `get`.
                unsafe { &*existing }
            }
        }
    }
}

impl Drop for StatsSlot {
    fn drop(&mut self) {
        let p = *self.0.get_mut();
        if !p.is_null() {
            // SAFETY: the slot owns the strong count taken in `register`.
            let stats = unsafe { Arc::from_raw(p) };
            stats.retired.store(true, Release);
        }
    }
}

impl std::fmt::Debug for StatsSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StatsSlot")
    }
}

/// Totals for one lock name and mode over one profile period.
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Totals {
    /// Exact acquisitions, when the mode is counted.
    pub(crate) acquired: Option<u64>,
    pub(crate) contended: u64,
    /// The exact total wait, where every wait is measured (async locks): in
    /// clock ticks from [`take_deltas`], converted to nanoseconds by the flush.
    pub(crate) wait_ns: Option<u64>,
}

/// Reads every block, returns what changed since the last call per
/// (site, mode), and forgets blocks whose lock is gone.
pub(crate) fn take_deltas() -> std::collections::HashMap<(SiteKey, Mode), Totals> {
    let mut out = std::collections::HashMap::new();
    let mut registry = REGISTRY.lock();
    registry.retain(|stats| {
        // Before the counters: once retired, no count can follow the reads
        // below. (Checking the strong count after them lost the counts made
        // between the reads and the drop; see loom-model/tests/stats_slot.rs.)
        let retired = stats.retired.load(Acquire);
        let waits_measured = stats.waits_measured.load(Relaxed);
        for (i, &mode) in stats.mode_of.iter().enumerate() {
            let m = &stats.modes[i];
            let r = &stats.reported[i];
            let now = [
                m.acquired.load(Relaxed),
                m.contended.load(Relaxed),
                m.wait_ticks.load(Relaxed),
            ];
            let delta: Vec<u64> = (0..3)
                .map(|i| now[i].wrapping_sub(r[i].swap(now[i], Relaxed)))
                .collect();
            // A counted mode is reported even when nothing changed: its
            // sampled events that reach the recorder after the flush that
            // counted them must then weigh 0, not be counted a second time.
            if delta.iter().all(|&d| d == 0) && !(mode.counted() && now[0] > 0) {
                continue;
            }
            let t: &mut Totals = out.entry((stats.site, mode)).or_default();
            if mode.counted() {
                *t.acquired.get_or_insert(0) += delta[0];
            }
            t.contended += delta[1];
            if waits_measured {
                *t.wait_ns.get_or_insert(0) += delta[2];
            }
        }
        // A retired lock was read a last time above.
        !retired
    });
    out
}

/// Marks everything counted so far as reported: a new session starts at 0.
pub(crate) fn reset_baseline() {
    let _ = take_deltas();
}
