use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use tokio::sync::Semaphore;

use super::AsyncTryLockError;
use crate::record::LockHandle;
use crate::record::{task, Mode, Ticket};
use crate::site::LockSite;

/// An async mutex with `tokio::sync::Mutex`'s API and semantics (fair, no
/// poisoning, guards that may be held across `.await` and sent between
/// threads) whose acquisitions are profiled.
///
/// ```
/// use lockprof::ProfiledAsyncMutex as Mutex; // was: use tokio::sync::Mutex;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let counter = Mutex::new(0);
/// *counter.lock().await += 1;
/// assert_eq!(counter.into_inner(), 1);
/// # }
/// ```
///
/// The lock remembers where it was created (`#[track_caller]`); give it a
/// variable name with [`named!`](crate::named) or [`named`](Self::named).
/// The wait recorded is the time from the first poll of `lock()` to the
/// guard; the hold is the guard's lifetime.
pub struct ProfiledAsyncMutex<T: ?Sized> {
    sem: Semaphore,
    handle: LockHandle,
    data: UnsafeCell<T>,
}

// SAFETY: as tokio's Mutex: the semaphore's single permit hands out `&mut T`
// to one holder at a time.
unsafe impl<T: ?Sized + Send> Send for ProfiledAsyncMutex<T> {}
// SAFETY: as above; `T: Send` suffices since only one holder accesses it.
unsafe impl<T: ?Sized + Send> Sync for ProfiledAsyncMutex<T> {}

/// The guard of a [`ProfiledAsyncMutex`]; the lock is released when it drops.
#[must_use = "if unused the Mutex will immediately unlock"]
pub struct ProfiledAsyncMutexGuard<'a, T: ?Sized> {
    lock: &'a ProfiledAsyncMutex<T>,
    ticket: Ticket,
    _no_auto_traits: PhantomData<*const ()>,
}

// SAFETY: moving the guard moves the exclusive access to `T` (as tokio's).
unsafe impl<T: ?Sized + Send> Send for ProfiledAsyncMutexGuard<'_, T> {}
// SAFETY: sharing the guard only shares `&T`.
unsafe impl<T: ?Sized + Send + Sync> Sync for ProfiledAsyncMutexGuard<'_, T> {}

/// The guard of [`ProfiledAsyncMutex::lock_owned`]: keeps the mutex alive
/// through an `Arc` and can be moved into a spawned task.
#[must_use = "if unused the Mutex will immediately unlock"]
pub struct OwnedProfiledAsyncMutexGuard<T: ?Sized> {
    lock: Arc<ProfiledAsyncMutex<T>>,
    ticket: Ticket,
    _no_auto_traits: PhantomData<*const ()>,
}

// SAFETY: as for the borrowed guard.
unsafe impl<T: ?Sized + Send> Send for OwnedProfiledAsyncMutexGuard<T> {}
// SAFETY: as for the borrowed guard.
unsafe impl<T: ?Sized + Send + Sync> Sync for OwnedProfiledAsyncMutexGuard<T> {}

impl<T> ProfiledAsyncMutex<T> {
    /// Creates an unlocked mutex; its site is the caller's file and line.
    /// Usable in `static`s.
    #[track_caller]
    #[inline]
    pub const fn new(value: T) -> Self {
        ProfiledAsyncMutex {
            sem: Semaphore::const_new(1),
            handle: LockHandle::caller(),
            data: UnsafeCell::new(value),
        }
    }

    /// The same as [`new`](Self::new), under tokio's name for it.
    #[track_caller]
    #[inline]
    pub const fn const_new(value: T) -> Self {
        Self::new(value)
    }

    /// Gives the lock a variable name for profiles (usable in `static`s).
    pub const fn named(mut self, name: &'static str) -> Self {
        self.handle = self.handle.named(name);
        self
    }

    /// Consumes the mutex, returning the data.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: ?Sized> ProfiledAsyncMutex<T> {
    /// Locks the mutex, waiting (asynchronously) until it is available.
    ///
    /// Cancel safe: a future dropped before it acquired the lock gives up its
    /// place in the queue and records nothing.
    pub async fn lock(&self) -> ProfiledAsyncMutexGuard<'_, T> {
        let ticket = task::lock(&self.sem, 1, &self.handle, Mode::Exclusive).await;
        ProfiledAsyncMutexGuard {
            lock: self,
            ticket,
            _no_auto_traits: PhantomData,
        }
    }

    /// Locks the mutex from synchronous code, blocking the thread. Do not
    /// call it from an async task (it would block a worker thread).
    pub fn blocking_lock(&self) -> ProfiledAsyncMutexGuard<'_, T> {
        super::block_on(self.lock())
    }

    /// Attempts to lock without waiting. A failed attempt is not recorded.
    #[inline]
    pub fn try_lock(&self) -> Result<ProfiledAsyncMutexGuard<'_, T>, AsyncTryLockError> {
        match task::try_acquire(&self.sem, 1, &self.handle, Mode::Exclusive) {
            Ok(ticket) => Ok(ProfiledAsyncMutexGuard {
                lock: self,
                ticket,
                _no_auto_traits: PhantomData,
            }),
            Err(_) => Err(AsyncTryLockError(())),
        }
    }

    /// Locks the mutex, returning a guard that owns an `Arc` of it.
    pub async fn lock_owned(self: Arc<Self>) -> OwnedProfiledAsyncMutexGuard<T> {
        let ticket = task::lock(&self.sem, 1, &self.handle, Mode::Exclusive).await;
        OwnedProfiledAsyncMutexGuard {
            lock: self,
            ticket,
            _no_auto_traits: PhantomData,
        }
    }

    /// Attempts to lock without waiting, returning an owned guard. A failed
    /// attempt is not recorded.
    #[inline]
    pub fn try_lock_owned(self: Arc<Self>) -> Result<OwnedProfiledAsyncMutexGuard<T>, AsyncTryLockError> {
        match task::try_acquire(&self.sem, 1, &self.handle, Mode::Exclusive) {
            Ok(ticket) => Ok(OwnedProfiledAsyncMutexGuard {
                lock: self,
                ticket,
                _no_auto_traits: PhantomData,
            }),
            Err(_) => Err(AsyncTryLockError(())),
        }
    }

    /// A mutable reference to the data, without locking: the borrow checker
    /// proves no guard exists.
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    /// Where the lock was created, and its name.
    pub fn site(&self) -> &LockSite {
        self.handle.site()
    }
}

crate::naming::lock_type_impls!(ProfiledAsyncMutex);

impl<T: ?Sized + fmt::Debug> fmt::Debug for ProfiledAsyncMutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ProfiledAsyncMutex");
        d.field("site", self.handle.site());
        // Not recorded: a plain try on the semaphore, released on drop.
        match self.sem.try_acquire() {
            Ok(_permit) => {
                // SAFETY: the permit held here excludes every guard.
                d.field("data", &unsafe { &*self.data.get() });
            }
            Err(_) => {
                d.field("data", &format_args!("<locked>"));
            }
        }
        d.finish_non_exhaustive()
    }
}

impl<'a, T: ?Sized> ProfiledAsyncMutexGuard<'a, T> {
    /// The mutex this guard locks (an associated function, so it never
    /// shadows a method of `T`).
    pub fn mutex(this: &Self) -> &'a ProfiledAsyncMutex<T> {
        this.lock
    }
}

impl<T: ?Sized> OwnedProfiledAsyncMutexGuard<T> {
    /// The mutex this guard locks.
    pub fn mutex(this: &Self) -> &Arc<ProfiledAsyncMutex<T>> {
        &this.lock
    }
}

impl<T: ?Sized> Deref for ProfiledAsyncMutexGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> DerefMut for ProfiledAsyncMutexGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the lock exclusively.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for ProfiledAsyncMutexGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        let lock = self.lock;
        task::release(self.ticket, &lock.handle, Mode::Exclusive, || {
            lock.sem.add_permits(1)
        });
    }
}

impl<T: ?Sized> Deref for OwnedProfiledAsyncMutexGuard<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> DerefMut for OwnedProfiledAsyncMutexGuard<T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the lock exclusively.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for OwnedProfiledAsyncMutexGuard<T> {
    #[inline]
    fn drop(&mut self) {
        let lock = &*self.lock;
        task::release(self.ticket, &lock.handle, Mode::Exclusive, || {
            lock.sem.add_permits(1)
        });
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for ProfiledAsyncMutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Display> fmt::Display for ProfiledAsyncMutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for OwnedProfiledAsyncMutexGuard<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Display> fmt::Display for OwnedProfiledAsyncMutexGuard<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}
