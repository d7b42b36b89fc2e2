//! The raw re-entrant mutex under
//! [`ProfiledReentrantMutex`](super::ProfiledReentrantMutex): a
//! [`RawMutex`] with its owner's thread id beside it and a count of the
//! owner's nested acquisitions, the same protocol as `lock_api`'s
//! `RawReentrantMutex`.
//!
//! Why our own: `ProfiledReentrantMutex` must tell a nested acquisition (not
//! recorded) from an outermost one before it records anything, so it asks
//! whether this thread is the owner, and `lock_api`'s type then asks again
//! inside its own `lock`, and tries its inner mutex with a load and a CAS
//! loop. Here the ownership test is asked once, and an outermost acquisition
//! is [`RawMutex::try_lock_fast`]'s one CAS: criterion's
//! `uncontended/reentrant` with no profiler measured 1.12-1.13x
//! `parking_lot::ReentrantMutex` over `lock_api`'s type, 0.96-1.03x over
//! this one (plain build, alternated).

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use super::raw::RawMutex;

/// This thread's id for ownership tests: the address of a thread-local byte,
/// never 0, unique among the threads alive (as `parking_lot`'s
/// `RawThreadId`). A thread that ends holding the lock (a leaked guard)
/// leaves the lock to whichever thread later gets the same address, as in
/// `parking_lot`.
#[inline(always)]
fn current_thread() -> usize {
    thread_local! {
        static ID: u8 = const { 0 };
    }
    ID.with(|id| id as *const u8 as usize)
}

/// A mutual exclusion lock that its owner can take again.
pub(crate) struct RawReentrantMutex {
    mutex: RawMutex,
    /// The owner's [`current_thread`], 0 when none. Written only by the
    /// owner; other threads read it only to see that it is not theirs.
    owner: AtomicUsize,
    /// The owner's acquisitions not yet released; touched only by the owner.
    count: Cell<usize>,
}

// SAFETY: `count` is read and written only by the thread that holds `mutex`
// (the owner), and the mutex's acquire/release orders those accesses between
// successive owners; `owner` is atomic.
unsafe impl Sync for RawReentrantMutex {}

impl RawReentrantMutex {
    /// An unlocked mutex.
    pub(crate) const fn new() -> RawReentrantMutex {
        RawReentrantMutex {
            mutex: RawMutex::new(),
            owner: AtomicUsize::new(0),
            count: Cell::new(0),
        }
    }

    /// Whether this thread holds the lock.
    #[inline(always)]
    pub(crate) fn is_owned_by_current_thread(&self) -> bool {
        self.owner.load(Relaxed) == current_thread()
    }

    /// One more acquisition, if this thread holds the lock already: the
    /// whole of a nested acquisition (it never waits). `false` when this
    /// thread does not hold it.
    ///
    /// # Panics
    /// When the owner's nested acquisitions overflow `usize`, as
    /// `parking_lot`'s and std's re-entrant locks do: the count cannot wrap,
    /// or a release would free a lock that guards still use. (2^64 guards
    /// alive at once: not reachable by a program that drops its guards.)
    #[inline]
    #[allow(clippy::expect_used)]
    pub(crate) fn try_relock(&self) -> bool {
        if !self.is_owned_by_current_thread() {
            return false;
        }
        let count = self.count.get().checked_add(1);
        self.count
            .set(count.expect("ProfiledReentrantMutex: lock count overflow"));
        true
    }

    /// The outermost acquisition, if the lock is free and no thread queued:
    /// one CAS.
    #[inline(always)]
    pub(crate) fn try_lock_fast(&self) -> bool {
        self.mutex.try_lock_fast() && self.owned()
    }

    /// The outermost acquisition, if the lock is free.
    #[inline]
    pub(crate) fn try_lock(&self) -> bool {
        self.mutex.try_lock() && self.owned()
    }

    /// The outermost acquisition, blocking until the lock is taken.
    #[inline]
    pub(crate) fn lock(&self) {
        self.mutex.lock();
        self.owned();
    }

    /// The outermost acquisition, blocking at most `timeout`.
    #[inline]
    pub(crate) fn try_lock_for(&self, timeout: Duration) -> bool {
        self.mutex.try_lock_for(timeout) && self.owned()
    }

    /// The mutex was just taken by this thread.
    #[inline(always)]
    fn owned(&self) -> bool {
        self.owner.store(current_thread(), Relaxed);
        self.count.set(1);
        true
    }

    /// Releases one acquisition; the last one releases the lock.
    ///
    /// # Safety
    /// The calling thread holds the lock, and releases each of its
    /// acquisitions once.
    #[inline]
    pub(crate) unsafe fn unlock(&self) {
        let count = self.count.get() - 1;
        self.count.set(count);
        if count == 0 {
            self.owner.store(0, Relaxed);
            // SAFETY: this thread holds the mutex (this function's contract);
            // no waiter with a blame record parks on it (the re-entrant
            // lock's sampled waiters are charged through `Watched`), so
            // there is nothing to charge.
            unsafe { self.mutex.unlock_charging(|| 0, |_| {}) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn the_owner_takes_it_again_and_the_last_release_frees_it() {
        let m = RawReentrantMutex::new();
        assert!(!m.is_owned_by_current_thread());
        assert!(!m.try_relock(), "not held: nothing to nest");
        assert!(m.try_lock_fast());
        assert!(m.is_owned_by_current_thread());
        assert!(m.try_relock());
        assert!(m.try_relock());
        // SAFETY: held three times by this thread.
        unsafe { m.unlock() };
        // SAFETY: as above.
        unsafe { m.unlock() };
        assert!(m.is_owned_by_current_thread(), "one acquisition still held");
        let other = std::thread::scope(|s| s.spawn(|| (m.try_relock(), m.try_lock())).join().unwrap());
        assert_eq!(other, (false, false), "another thread cannot take it while held");
        // SAFETY: the last acquisition.
        unsafe { m.unlock() };
        assert!(!m.is_owned_by_current_thread());
        let other = std::thread::scope(|s| {
            s.spawn(|| {
                let taken = m.try_lock();
                // SAFETY: taken just above by this thread.
                unsafe { m.unlock() };
                taken
            })
            .join()
            .unwrap()
        });
        assert!(other, "free again");
    }

    /// Threads nesting acquisitions while others contend: a lost update
    /// means two threads held it at once.
    #[test]
    fn excludes_under_contention() {
        struct Shared {
            lock: RawReentrantMutex,
            count: std::cell::UnsafeCell<u64>,
        }
        // SAFETY: `count` is only touched with `lock` held.
        unsafe impl Sync for Shared {}
        let shared = Arc::new(Shared {
            lock: RawReentrantMutex::new(),
            count: 0.into(),
        });
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || {
                    for n in 0..20_000u64 {
                        if (n + i) % 5 == 0 {
                            while !shared.lock.try_lock_for(Duration::from_micros(50)) {}
                        } else if !shared.lock.try_lock_fast() {
                            shared.lock.lock();
                        }
                        assert!(shared.lock.try_relock());
                        // SAFETY: the lock is held.
                        unsafe { *shared.count.get() += 1 };
                        // SAFETY: held twice by this thread.
                        unsafe { shared.lock.unlock() };
                        // SAFETY: as above.
                        unsafe { shared.lock.unlock() };
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // SAFETY: all threads joined.
        assert_eq!(unsafe { *shared.count.get() }, 4 * 20_000);
    }
}
