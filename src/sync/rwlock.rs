use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::{LockResult, PoisonError, TryLockError, TryLockResult};
use std::time::Duration;

use lock_api::{RawRwLock as _, RawRwLockTimed as _};

use super::poison;
use crate::record::blame::{self, Watched};
use crate::record::{self, Mode, Ticket};
use crate::record::{LockHandle, StatsSlot};
use crate::site::LockSite;

/// A reader-writer lock with `std::sync::RwLock`'s API and semantics whose
/// acquisitions are profiled, reads and writes separately (label
/// `lock mode`: `read` / `write`).
///
/// ```
/// use lockprof::ProfiledRwLock as RwLock; // was: use std::sync::RwLock;
///
/// let config = RwLock::new(String::from("v1"));
/// assert_eq!(*config.read().unwrap(), "v1");
/// config.write().unwrap().push_str(".1");
/// ```
pub struct ProfiledRwLock<T: ?Sized> {
    raw: parking_lot::RawRwLock,
    /// Sampled waiters listed for blame (see [`Watched`]).
    watched: Watched,
    poison: poison::Flag,
    site: LockSite,
    stats: StatsSlot,
    data: UnsafeCell<T>,
}

// SAFETY: as std's RwLock.
unsafe impl<T: ?Sized + Send> Send for ProfiledRwLock<T> {}
// SAFETY: as std's RwLock: readers share `&T`, so `T: Sync` is needed too.
unsafe impl<T: ?Sized + Send + Sync> Sync for ProfiledRwLock<T> {}

/// Shared access to a [`ProfiledRwLock`]'s data.
#[must_use = "if unused the RwLock will immediately unlock"]
pub struct ProfiledRwLockReadGuard<'a, T: ?Sized + 'a> {
    lock: &'a ProfiledRwLock<T>,
    ticket: Ticket,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: sharing the guard only shares `&T`.
unsafe impl<T: ?Sized + Sync> Sync for ProfiledRwLockReadGuard<'_, T> {}

/// Exclusive access to a [`ProfiledRwLock`]'s data.
#[must_use = "if unused the RwLock will immediately unlock"]
pub struct ProfiledRwLockWriteGuard<'a, T: ?Sized + 'a> {
    lock: &'a ProfiledRwLock<T>,
    poison: poison::Guard,
    ticket: Ticket,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: sharing the guard only shares `&T`.
unsafe impl<T: ?Sized + Sync> Sync for ProfiledRwLockWriteGuard<'_, T> {}

struct Read<'a>(&'a parking_lot::RawRwLock, &'a Watched);
struct Write<'a>(&'a parking_lot::RawRwLock, &'a Watched);

watched_raw_acquire!(Read, try_lock_shared, lock_shared, try_lock_shared_for);

watched_raw_acquire!(Write, try_lock_exclusive, lock_exclusive, try_lock_exclusive_for);

impl<T> ProfiledRwLock<T> {
    /// Creates an unlocked lock; its site is the caller's file and line.
    #[track_caller]
    #[inline]
    pub const fn new(value: T) -> Self {
        ProfiledRwLock {
            raw: <parking_lot::RawRwLock as lock_api::RawRwLock>::INIT,
            watched: Watched::new(),
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

    /// Consumes the lock, returning the data; `Err` if it is poisoned.
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

impl<T: ?Sized> ProfiledRwLock<T> {
    /// The lock's site and count slot, for the recording core.
    #[inline(always)]
    fn handle(&self) -> LockHandle<'_> {
        LockHandle::new(&self.site, &self.stats)
    }
    /// Acquires shared read access, blocking while a writer holds the lock.
    #[inline]
    pub fn read(&self) -> LockResult<ProfiledRwLockReadGuard<'_, T>> {
        let ticket = record::lock(Read(&self.raw, &self.watched), self.handle(), Mode::Read);
        self.read_guard(ticket)
    }

    /// Attempts shared read access without blocking.
    #[inline]
    pub fn try_read(&self) -> TryLockResult<ProfiledRwLockReadGuard<'_, T>> {
        match record::try_lock(Read(&self.raw, &self.watched), self.handle(), Mode::Read) {
            Some(ticket) => Ok(self.read_guard(ticket)?),
            None => Err(TryLockError::WouldBlock),
        }
    }

    /// Attempts shared read access, waiting at most `timeout`.
    #[inline]
    pub fn try_read_for(&self, timeout: Duration) -> TryLockResult<ProfiledRwLockReadGuard<'_, T>> {
        match record::lock_for(Read(&self.raw, &self.watched), self.handle(), Mode::Read, timeout) {
            Some(ticket) => Ok(self.read_guard(ticket)?),
            None => Err(TryLockError::WouldBlock),
        }
    }

    /// Acquires exclusive write access, blocking until it is available.
    #[inline]
    pub fn write(&self) -> LockResult<ProfiledRwLockWriteGuard<'_, T>> {
        let ticket = record::lock(Write(&self.raw, &self.watched), self.handle(), Mode::Write);
        self.write_guard(ticket)
    }

    /// Attempts exclusive write access without blocking.
    #[inline]
    pub fn try_write(&self) -> TryLockResult<ProfiledRwLockWriteGuard<'_, T>> {
        match record::try_lock(Write(&self.raw, &self.watched), self.handle(), Mode::Write) {
            Some(ticket) => Ok(self.write_guard(ticket)?),
            None => Err(TryLockError::WouldBlock),
        }
    }

    /// Attempts exclusive write access, waiting at most `timeout`.
    #[inline]
    pub fn try_write_for(&self, timeout: Duration) -> TryLockResult<ProfiledRwLockWriteGuard<'_, T>> {
        match record::lock_for(
            Write(&self.raw, &self.watched),
            self.handle(),
            Mode::Write,
            timeout,
        ) {
            Some(ticket) => Ok(self.write_guard(ticket)?),
            None => Err(TryLockError::WouldBlock),
        }
    }

    // Called only with the lock just acquired in shared mode.
    #[inline]
    fn read_guard(&self, ticket: Ticket) -> LockResult<ProfiledRwLockReadGuard<'_, T>> {
        let guard = ProfiledRwLockReadGuard {
            lock: self,
            ticket,
            _not_send: PhantomData,
        };
        if self.poison.get() {
            Err(PoisonError::new(guard))
        } else {
            Ok(guard)
        }
    }

    // Called only with the lock just acquired exclusively.
    #[inline]
    fn write_guard(&self, ticket: Ticket) -> LockResult<ProfiledRwLockWriteGuard<'_, T>> {
        poison::map_result(self.poison.guard(), |poison| ProfiledRwLockWriteGuard {
            lock: self,
            poison,
            ticket,
            _not_send: PhantomData,
        })
    }

    /// Whether a writer panicked while holding the lock.
    #[inline]
    pub fn is_poisoned(&self) -> bool {
        self.poison.get()
    }

    /// Clears the poisoned state.
    #[inline]
    pub fn clear_poison(&self) {
        self.poison.clear();
    }

    /// A mutable reference to the data, without locking.
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

crate::naming::lock_type_impls!(ProfiledRwLock);

impl<T: ?Sized + fmt::Debug> fmt::Debug for ProfiledRwLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ProfiledRwLock");
        d.field("site", &self.site);
        if self.raw.try_lock_shared() {
            // SAFETY: a shared lock is held until the unlock below.
            d.field("data", &unsafe { &*self.data.get() });
            // SAFETY: taken just above.
            unsafe { self.raw.unlock_shared() };
        } else {
            d.field("data", &format_args!("<locked>"));
        }
        d.field("poisoned", &self.poison.get());
        d.finish_non_exhaustive()
    }
}

impl<T: ?Sized> Deref for ProfiledRwLockReadGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the guard holds a shared lock.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> Deref for ProfiledRwLockWriteGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock exclusively.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> DerefMut for ProfiledRwLockWriteGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the lock exclusively.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for ProfiledRwLockReadGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        let lock = self.lock;
        record::release(self.ticket, lock.handle(), Mode::Read, || {
            // SAFETY: this guard holds one shared lock and releases it once.
            let unlock = || unsafe { lock.raw.unlock_shared() };
            if lock.watched.any() {
                blame::release_watched(&lock.watched, &lock.site, Mode::Read, unlock)
            } else {
                unlock()
            }
        });
    }
}

impl<T: ?Sized> Drop for ProfiledRwLockWriteGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        let lock = self.lock;
        lock.poison.done(&self.poison);
        record::release(self.ticket, lock.handle(), Mode::Write, || {
            // SAFETY: this guard holds the exclusive lock and releases it once.
            let unlock = || unsafe { lock.raw.unlock_exclusive() };
            if lock.watched.any() {
                blame::release_watched(&lock.watched, &lock.site, Mode::Write, unlock)
            } else {
                unlock()
            }
        });
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for ProfiledRwLockReadGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Display> fmt::Display for ProfiledRwLockReadGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for ProfiledRwLockWriteGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Display> fmt::Display for ProfiledRwLockWriteGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}
