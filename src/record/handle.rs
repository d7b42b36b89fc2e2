//! What the recording core needs of a lock: its site and its count slot,
//! borrowed together so that they travel as one value through every call.
//!
//! The lock types hold the two as fields of their own, beside the raw lock
//! word, rather than in a struct of their own: the site (24 bytes) and the
//! slot (4) leave 4 bytes that the lock word and the poison flag fill, so
//! the data starts 32 bytes in, right after the lock word. Nested in a
//! struct, the pair would be padded to 32 bytes and push the lock word and
//! the data 8 bytes further: a lock placed at the start of a cache line
//! would then have its data cross into the next line, and a contended
//! critical section move two lines between cores instead of one.

use crate::site::LockSite;

use super::stats::Prepared;
use super::{Mode, StatsSlot};

/// A lock's identity for profiles (its [`LockSite`]: file, line, name) and
/// its index into the per-name count tables, borrowed from the lock.
///
/// Passed by value, never by reference: two pointers travel in registers,
/// while a reference to a handle made in a lock's inlined fast path makes
/// the compiler store the handle on the stack before the lock's atomic
/// instruction, which then waits for those stores to drain. On the AMD EPYC
/// VM, handles and raw locks passed by reference cost an unprofiled
/// uncontended `ProfiledMutex` 1.10x `parking_lot`; by value, 1.02x.
#[derive(Clone, Copy)]
pub(crate) struct LockHandle<'a> {
    site: &'a LockSite,
    stats: &'a StatsSlot,
}

impl<'a> LockHandle<'a> {
    /// The handle of a lock whose fields are `site` and `stats`.
    #[inline(always)]
    pub(crate) fn new(site: &'a LockSite, stats: &'a StatsSlot) -> LockHandle<'a> {
        LockHandle { site, stats }
    }

    #[inline(always)]
    pub(crate) fn site(self) -> &'a LockSite {
        self.site
    }

    /// Counts an acquisition whose lock is now held (see
    /// [`StatsSlot::count_held`]).
    #[inline(always)]
    pub(crate) fn count_held(self, mode: Mode) -> bool {
        self.stats.count_held(self.site, mode)
    }

    /// Counts an acquisition with no lock held (may allocate).
    pub(crate) fn count_unlocked(self, mode: Mode) {
        self.stats.count_unlocked(self.site, mode)
    }

    /// Counts a shared acquisition (async locks).
    #[cfg(feature = "tokio")]
    pub(crate) fn count_shared(self, mode: Mode) {
        self.stats.count_shared(self.site, mode)
    }

    /// Makes this thread's count slot now, while no lock is held.
    pub(crate) fn prepare(self, mode: Mode) -> Prepared {
        self.stats.prepare(self.site, mode)
    }

    /// Whether this thread's table has the slot already.
    #[inline(always)]
    pub(crate) fn ready(self) -> bool {
        self.stats.ready()
    }

    /// Adds a contended acquisition and its wait.
    #[inline(always)]
    pub(crate) fn contended(self, mode: Mode, wait_ticks: u64) {
        self.stats.contended(mode, wait_ticks)
    }
}
