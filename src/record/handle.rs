//! What a lock carries for the recording core: one value, so that the
//! lock's site and its count slot travel together through every call.

use crate::site::LockSite;

use super::stats::Prepared;
use super::{Mode, StatsSlot};

/// A lock's identity for profiles (its [`LockSite`]: file, line, name) and
/// its index into the per-name count tables. Created once with the lock;
/// 4 bytes more than the site.
pub(crate) struct LockHandle {
    site: LockSite,
    stats: StatsSlot,
}

impl LockHandle {
    /// The handle of a lock created by the caller of a `#[track_caller]`
    /// constructor.
    #[track_caller]
    #[inline]
    pub(crate) const fn caller() -> LockHandle {
        LockHandle {
            site: LockSite::caller(),
            stats: StatsSlot::new(),
        }
    }

    /// The same lock with a variable name (usable in `static`s).
    pub(crate) const fn named(mut self, name: &'static str) -> LockHandle {
        self.site = self.site.with_name(name);
        self
    }

    /// Renames the lock in place (for `Nameable`).
    pub(crate) fn rename(&mut self, name: &'static str) {
        self.site = self.site.with_name(name);
    }

    #[inline(always)]
    pub(crate) fn site(&self) -> &LockSite {
        &self.site
    }

    /// Counts an acquisition whose lock is now held (see
    /// [`StatsSlot::count_held`]).
    #[inline(always)]
    pub(crate) fn count_held(&self, mode: Mode) -> bool {
        self.stats.count_held(&self.site, mode)
    }

    /// Counts an acquisition with no lock held (may allocate).
    pub(crate) fn count_unlocked(&self, mode: Mode) {
        self.stats.count_unlocked(&self.site, mode)
    }

    /// Counts a shared acquisition (async locks).
    #[cfg(feature = "tokio")]
    pub(crate) fn count_shared(&self, mode: Mode) {
        self.stats.count_shared(&self.site, mode)
    }

    /// Makes this thread's count slot now, while no lock is held.
    pub(crate) fn prepare(&self, mode: Mode) -> Prepared {
        self.stats.prepare(&self.site, mode)
    }

    /// Whether this thread's table has the slot already.
    #[inline(always)]
    pub(crate) fn ready(&self) -> bool {
        self.stats.ready()
    }

    /// Adds a contended acquisition and its wait.
    #[inline(always)]
    pub(crate) fn contended(&self, mode: Mode, wait_ticks: u64) {
        self.stats.contended(mode, wait_ticks)
    }
}
