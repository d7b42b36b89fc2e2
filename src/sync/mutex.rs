use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::{LockResult, PoisonError, TryLockError, TryLockResult};
use std::time::Duration;

use super::poison;
use super::raw::RawMutex;
use crate::record::blame::{self, WaitRecord};
use crate::record::{self, clock, Mode, RawAcquire, Ticket};
use crate::record::{LockHandle, StatsSlot};
use crate::site::LockSite;

/// A mutual exclusion lock with `std::sync::Mutex`'s API and semantics
/// (poisoning included) whose acquisitions are profiled.
///
/// ```
/// use lockprof::ProfiledMutex as Mutex; // was: use std::sync::Mutex;
///
/// let counter = Mutex::new(0);
/// *counter.lock().unwrap() += 1;
/// assert_eq!(counter.into_inner().unwrap(), 1);
/// ```
///
/// The lock remembers where it was created (`#[track_caller]`); give it a
/// variable name with [`named!`](crate::named) or [`named`](Self::named) so
/// profiles show `file.rs:42:session_lock`.
// In this order: the site and the count slot (read-only after the first
// acquisitions) first, then the lock word and the poison flag in the slot's
// padding, so that the data starts 32 bytes in, right after the lock word. A
// critical section on data of up to 32 bytes then touches one cache line
// when the lock starts one, as a contended lock padded to its own line does
// (see `record::handle`). With the lock word and the data split across two
// lines, two locks under contention ran at 0.65-0.83x parking_lot's
// throughput (2 to 32 threads), against 0.80-0.93x on one line.
#[repr(C)]
pub struct ProfiledMutex<T: ?Sized> {
    site: LockSite,
    stats: StatsSlot,
    raw: RawMutex,
    poison: poison::Flag,
    data: UnsafeCell<T>,
}

// SAFETY: as std's Mutex: the lock hands out `&mut T` to one thread at a time.
unsafe impl<T: ?Sized + Send> Send for ProfiledMutex<T> {}
// SAFETY: as above; `T: Send` suffices since only one thread accesses it.
unsafe impl<T: ?Sized + Send> Sync for ProfiledMutex<T> {}

/// The guard of a [`ProfiledMutex`]; the lock is released when it drops.
#[must_use = "if unused the Mutex will immediately unlock"]
pub struct ProfiledMutexGuard<'a, T: ?Sized + 'a> {
    pub(crate) lock: &'a ProfiledMutex<T>,
    pub(crate) poison: poison::Guard,
    pub(crate) ticket: Ticket,
    // Like std's guard: not Send, because the lock must be released by the
    // thread that took it.
    _not_send: PhantomData<*const ()>,
}

// SAFETY: sharing the guard only shares `&T`.
unsafe impl<T: ?Sized + Sync> Sync for ProfiledMutexGuard<'_, T> {}

pub(crate) struct Raw<'a>(&'a RawMutex);

impl RawAcquire for Raw<'_> {
    #[inline(always)]
    fn try_acquire(&self) -> bool {
        self.0.try_lock()
    }
    #[inline(always)]
    fn acquire(&self) {
        self.0.lock()
    }
    #[inline]
    fn try_acquire_for(&self, timeout: Duration) -> bool {
        self.0.try_lock_for(timeout)
    }
    #[inline(always)]
    fn try_fast(&self) -> bool {
        self.0.try_lock_fast()
    }
    #[inline(always)]
    fn acquire_recorded(&self, record: &WaitRecord) {
        if !self.0.try_lock_fast() {
            self.0.lock_slow_timed(None, Some(record), || 0);
        }
    }
    #[inline]
    fn try_acquire_for_recorded(&self, record: &WaitRecord, timeout: Duration) -> bool {
        self.0.try_lock_fast()
            || self
                .0
                .lock_slow_timed(std::time::Instant::now().checked_add(timeout), Some(record), || 0)
                .is_some()
    }
    #[inline(always)]
    fn acquire_slow_timed(&self) -> u64 {
        // Without a deadline the slow path only returns with the lock.
        let at = self.0.lock_slow_timed(None, None, clock::now);
        at.unwrap_or_else(clock::now)
    }
}

impl<T> ProfiledMutex<T> {
    /// Creates an unlocked mutex; its site is the caller's file and line.
    #[track_caller]
    #[inline]
    pub const fn new(value: T) -> Self {
        ProfiledMutex {
            raw: RawMutex::new(),
            poison: poison::Flag::new(),
            site: LockSite::caller(),
            stats: StatsSlot::new(),
            data: UnsafeCell::new(value),
        }
    }

    /// Gives the lock a variable name for profiles (usable in `static`s).
    pub const fn named(mut self, name: &'static str) -> Self {
        self.site = self.site.with_name(name);
        self
    }

    /// Consumes the mutex, returning the data; `Err` if it is poisoned.
    pub fn into_inner(self) -> LockResult<T> {
        let poisoned = self.poison.get();
        let data = self.data.into_inner();
        if poisoned {
            Err(PoisonError::new(data))
        } else {
            Ok(data)
        }
    }
}

impl<T: ?Sized> ProfiledMutex<T> {
    /// The lock's site and count slot, for the recording core.
    #[inline(always)]
    fn handle(&self) -> LockHandle<'_> {
        LockHandle::new(&self.site, &self.stats)
    }
    /// Acquires the mutex, blocking until it is available.
    ///
    /// Returns `Err` wrapping the guard if another thread panicked while
    /// holding it.
    #[inline]
    pub fn lock(&self) -> LockResult<ProfiledMutexGuard<'_, T>> {
        let ticket = record::lock(Raw(&self.raw), self.handle(), Mode::Exclusive);
        // SAFETY: the lock was just acquired.
        unsafe { self.guard(ticket) }
    }

    /// Attempts to acquire the mutex without blocking. A failed attempt is
    /// not recorded.
    #[inline]
    pub fn try_lock(&self) -> TryLockResult<ProfiledMutexGuard<'_, T>> {
        match record::try_lock(Raw(&self.raw), self.handle(), Mode::Exclusive) {
            // SAFETY: the lock was just acquired.
            Some(ticket) => Ok(unsafe { self.guard(ticket) }?),
            None => Err(TryLockError::WouldBlock),
        }
    }

    /// Attempts to acquire the mutex, waiting at most `timeout`. A timed-out
    /// attempt is not recorded.
    #[inline]
    pub fn try_lock_for(&self, timeout: Duration) -> TryLockResult<ProfiledMutexGuard<'_, T>> {
        match record::lock_for(Raw(&self.raw), self.handle(), Mode::Exclusive, timeout) {
            // SAFETY: the lock was just acquired.
            Some(ticket) => Ok(unsafe { self.guard(ticket) }?),
            None => Err(TryLockError::WouldBlock),
        }
    }

    /// # Safety
    /// The lock must be held by the current thread, and the guard made here
    /// is the one that releases it.
    #[inline]
    unsafe fn guard(&self, ticket: Ticket) -> LockResult<ProfiledMutexGuard<'_, T>> {
        poison::map_result(self.poison.guard(), |poison| ProfiledMutexGuard {
            lock: self,
            poison,
            ticket,
            _not_send: PhantomData,
        })
    }

    /// Whether a thread panicked while holding the lock.
    #[inline]
    pub fn is_poisoned(&self) -> bool {
        self.poison.get()
    }

    /// Clears the poisoned state.
    #[inline]
    pub fn clear_poison(&self) {
        self.poison.clear();
    }

    /// A mutable reference to the data, without locking: the borrow checker
    /// proves no guard exists.
    pub fn get_mut(&mut self) -> LockResult<&mut T> {
        let data = self.data.get_mut();
        if self.poison.get() {
            Err(PoisonError::new(data))
        } else {
            Ok(data)
        }
    }

    /// Where the lock was created, and its name.
    pub fn site(&self) -> &LockSite {
        &self.site
    }
}

crate::naming::lock_type_impls!(ProfiledMutex);

impl<T: ?Sized + fmt::Debug> fmt::Debug for ProfiledMutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ProfiledMutex");
        d.field("site", &self.site);
        match self.try_lock_unrecorded() {
            Some(guard) => {
                d.field("data", &&*guard);
            }
            None => {
                d.field("data", &format_args!("<locked>"));
            }
        }
        d.field("poisoned", &self.poison.get());
        d.finish_non_exhaustive()
    }
}

impl<T: ?Sized> ProfiledMutex<T> {
    /// A try-lock that is never recorded, for `Debug`.
    fn try_lock_unrecorded(&self) -> Option<ProfiledMutexGuard<'_, T>> {
        if self.raw.try_lock() {
            // SAFETY: just acquired.
            Some(match unsafe { self.guard(Ticket::NONE) } {
                Ok(g) => g,
                Err(e) => e.into_inner(),
            })
        } else {
            None
        }
    }
}

impl<T: ?Sized> Deref for ProfiledMutexGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> DerefMut for ProfiledMutexGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the lock exclusively.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for ProfiledMutexGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        let lock = self.lock;
        lock.poison.done(&self.poison);
        record::release(self.ticket, lock.handle(), Mode::Exclusive, || {
            // SAFETY: this guard holds the lock and releases it once.
            unsafe {
                lock.raw.unlock_charging(clock::now, |charges| {
                    blame::charge_holder(&lock.site, Mode::Exclusive, charges)
                })
            }
        });
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for ProfiledMutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Display> fmt::Display for ProfiledMutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::ProfiledMutex;

    #[test]
    fn the_data_follows_the_lock_word_on_its_cache_line() {
        #[repr(align(64))]
        struct OwnLine(ProfiledMutex<[u64; 4]>);
        let line = OwnLine(ProfiledMutex::new([0; 4]));
        let start = &line as *const OwnLine as usize;
        let raw = &line.0.raw as *const _ as usize - start;
        let data = line.0.data.get() as usize - start;
        assert_eq!((raw, data), (28, 32), "lock word and data offsets");
        assert_eq!(std::mem::size_of::<ProfiledMutex<[u64; 4]>>(), 64);
    }
}
