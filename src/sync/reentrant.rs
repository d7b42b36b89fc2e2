use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::time::Duration;

use crate::record::blame::{self, Watched};
use crate::record::{self, Mode, Ticket};
use crate::record::{LockHandle, StatsSlot};
use crate::site::LockSite;

use super::raw_reentrant::RawReentrantMutex;

/// A re-entrant mutex (Python's `RLock`): the thread that holds it can lock it
/// again without deadlocking. Guards give shared access (`&T`); use a `Cell`
/// or `RefCell` inside for mutation.
///
/// Only the outermost acquisition of a thread is recorded: nested ones
/// neither wait nor start a new hold, and the hold time is that of the
/// outermost guard.
///
/// ```
/// use lockprof::ProfiledReentrantMutex;
/// use std::cell::Cell;
///
/// let attempts = ProfiledReentrantMutex::new(Cell::new(0));
/// let outer = attempts.lock();
/// let inner = attempts.lock(); // same thread: no deadlock
/// inner.set(inner.get() + 1);
/// drop(inner);
/// assert_eq!(outer.get(), 1);
/// assert!(attempts.is_owned_by_current_thread());
/// assert!(attempts.try_lock().is_some(), "the holder may always try again");
/// std::thread::scope(|s| {
///     let other = s.spawn(|| attempts.try_lock().is_none());
///     assert!(other.join().unwrap(), "another thread may not while it is held");
/// });
/// drop(outer);
/// assert!(!attempts.is_owned_by_current_thread());
/// ```
pub struct ProfiledReentrantMutex<T: ?Sized> {
    raw: RawReentrantMutex,
    /// Sampled waiters listed for blame (see [`Watched`]).
    watched: Watched,
    site: LockSite,
    stats: StatsSlot,
    data: UnsafeCell<T>,
}

// SAFETY: as parking_lot's ReentrantMutex: the data is shared (`&T`) only
// with the owning thread, so `T: Send` suffices.
unsafe impl<T: ?Sized + Send> Send for ProfiledReentrantMutex<T> {}
// SAFETY: as above.
unsafe impl<T: ?Sized + Send> Sync for ProfiledReentrantMutex<T> {}

/// The guard of a [`ProfiledReentrantMutex`].
#[must_use = "if unused the ReentrantMutex will immediately unlock"]
pub struct ProfiledReentrantMutexGuard<'a, T: ?Sized + 'a> {
    lock: &'a ProfiledReentrantMutex<T>,
    ticket: Ticket,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: sharing the guard shares `&T`.
unsafe impl<T: ?Sized + Sync> Sync for ProfiledReentrantMutexGuard<'_, T> {}

struct Raw<'a>(&'a RawReentrantMutex, &'a Watched);

watched_raw_acquire!(Raw, try_lock_fast, try_lock, lock, try_lock_for);

impl<T> ProfiledReentrantMutex<T> {
    /// Creates an unlocked re-entrant mutex; its site is the caller's.
    #[track_caller]
    #[inline]
    pub const fn new(value: T) -> Self {
        ProfiledReentrantMutex {
            raw: RawReentrantMutex::new(),
            watched: Watched::new(),
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

    /// Consumes the mutex, returning the data.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: ?Sized> ProfiledReentrantMutex<T> {
    /// The lock's site and count slot, for the recording core.
    #[inline(always)]
    fn handle(&self) -> LockHandle<'_> {
        LockHandle::new(&self.site, &self.stats)
    }
    /// Acquires the mutex, blocking unless this thread already holds it.
    #[inline]
    pub fn lock(&self) -> ProfiledReentrantMutexGuard<'_, T> {
        if let Some(nested) = self.nested() {
            return nested;
        }
        self.guard(record::lock(
            Raw(&self.raw, &self.watched),
            self.handle(),
            Mode::Exclusive,
        ))
    }

    /// A nested acquisition, when this thread holds the lock already: it
    /// never waits and is not recorded (the outermost guard's hold is).
    #[inline(always)]
    fn nested(&self) -> Option<ProfiledReentrantMutexGuard<'_, T>> {
        self.raw.try_relock().then(|| self.guard(Ticket::NONE))
    }

    /// Attempts to acquire without blocking.
    #[inline]
    pub fn try_lock(&self) -> Option<ProfiledReentrantMutexGuard<'_, T>> {
        if let Some(nested) = self.nested() {
            return Some(nested);
        }
        record::try_lock(Raw(&self.raw, &self.watched), self.handle(), Mode::Exclusive).map(|t| self.guard(t))
    }

    /// Attempts to acquire, waiting at most `timeout`.
    #[inline]
    pub fn try_lock_for(&self, timeout: Duration) -> Option<ProfiledReentrantMutexGuard<'_, T>> {
        if let Some(nested) = self.nested() {
            return Some(nested);
        }
        record::lock_for(
            Raw(&self.raw, &self.watched),
            self.handle(),
            Mode::Exclusive,
            timeout,
        )
        .map(|t| self.guard(t))
    }

    // Called only with the lock just acquired by this thread.
    #[inline]
    fn guard(&self, ticket: Ticket) -> ProfiledReentrantMutexGuard<'_, T> {
        ProfiledReentrantMutexGuard {
            lock: self,
            ticket,
            _not_send: PhantomData,
        }
    }

    /// Whether the current thread holds the lock.
    pub fn is_owned_by_current_thread(&self) -> bool {
        self.raw.is_owned_by_current_thread()
    }

    /// A mutable reference to the data, without locking.
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    /// Where the lock was created, and its name.
    pub fn site(&self) -> &LockSite {
        &self.site
    }
}

crate::naming::lock_type_impls!(ProfiledReentrantMutex);

impl<T: ?Sized + fmt::Debug> fmt::Debug for ProfiledReentrantMutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ProfiledReentrantMutex");
        d.field("site", &self.site);
        if self.raw.is_owned_by_current_thread() {
            // SAFETY: this thread holds the lock: only it can use the data.
            d.field("data", &unsafe { &*self.data.get() });
        } else if self.raw.try_lock() {
            // SAFETY: held until the unlock below.
            d.field("data", &unsafe { &*self.data.get() });
            // SAFETY: taken just above by this thread.
            unsafe { self.raw.unlock() };
        } else {
            d.field("data", &format_args!("<locked>"));
        }
        d.finish_non_exhaustive()
    }
}

impl<T: ?Sized> Deref for ProfiledReentrantMutexGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock; only this thread can hold it.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for ProfiledReentrantMutexGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        let lock = self.lock;
        record::release(self.ticket, lock.handle(), Mode::Exclusive, || {
            // SAFETY: this guard holds one level of the lock and releases it.
            let unlock = || unsafe { lock.raw.unlock() };
            // A nested release is charged too: the part of the waits since
            // the holder's release before it.
            if lock.watched.any() {
                blame::release_watched(&lock.watched, &lock.site, Mode::Exclusive, unlock)
            } else {
                unlock()
            }
        });
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for ProfiledReentrantMutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Display> fmt::Display for ProfiledReentrantMutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}
