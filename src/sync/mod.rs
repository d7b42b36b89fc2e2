//! The lock types: thin generic wrappers over raw locks (`parking_lot`'s
//! `RawRwLock`, and our own mutexes on `parking_lot_core` in `raw` and
//! `raw_reentrant`) that call into the non-generic recording core.

/// The [`RawAcquire`](crate::record::RawAcquire) of a lock mode on a raw
/// lock, a tuple of the raw lock and the lock's
/// [`Watched`](crate::record::blame::Watched) count: the mode's `try`,
/// `lock` and `try_for` methods, with waits charged through blame's
/// process-wide list (the read-write and re-entrant locks).
macro_rules! watched_raw_acquire {
    ($mode:ident, $try_lock:ident, $lock:ident, $try_lock_for:ident) => {
        watched_raw_acquire!($mode, $try_lock, $try_lock, $lock, $try_lock_for);
    };
    // `$try_fast`: the uncontended acquisition alone, where the raw lock has
    // one cheaper than `$try_lock` (see `RawAcquire::try_fast`).
    ($mode:ident, $try_fast:ident, $try_lock:ident, $lock:ident, $try_lock_for:ident) => {
        impl $crate::record::RawAcquire for $mode<'_> {
            #[inline(always)]
            fn try_acquire(&self) -> bool {
                self.0.$try_lock()
            }
            #[inline(always)]
            fn try_fast(&self) -> bool {
                self.0.$try_fast()
            }
            #[inline(always)]
            fn acquire(&self) {
                self.0.$lock()
            }
            #[inline]
            fn try_acquire_for(&self, timeout: std::time::Duration) -> bool {
                self.0.$try_lock_for(timeout)
            }
            #[inline(always)]
            fn acquire_recorded(&self, record: &$crate::record::blame::WaitRecord) {
                $crate::record::blame::wait_watched(self.1, record, || self.0.$lock())
            }
            #[inline]
            fn try_acquire_for_recorded(
                &self,
                record: &$crate::record::blame::WaitRecord,
                timeout: std::time::Duration,
            ) -> bool {
                $crate::record::blame::wait_watched(self.1, record, || self.0.$try_lock_for(timeout))
            }
            #[inline(always)]
            fn acquire_slow_timed(&self) -> u64 {
                self.0.$lock();
                self.1.acquired_after_wait()
            }
        }
    };
}

mod condvar;
mod mutex;
mod poison;
mod raw;
mod raw_reentrant;
mod reentrant;
mod rwlock;

pub use condvar::{ProfiledCondvar, WaitTimeoutResult};
pub use mutex::{ProfiledMutex, ProfiledMutexGuard};
pub use reentrant::{ProfiledReentrantMutex, ProfiledReentrantMutexGuard};
pub use rwlock::{ProfiledRwLock, ProfiledRwLockReadGuard, ProfiledRwLockWriteGuard};
