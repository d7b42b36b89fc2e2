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

/// Permits of the semaphore: a reader takes one, a writer all (as tokio's
/// `RwLock`).
const MAX_READS: u32 = u32::MAX >> 3;

/// An async read-write lock with `tokio::sync::RwLock`'s API and semantics
/// (fair: a waiting writer stops new readers; guards may be held across
/// `.await` and sent between threads) whose acquisitions are profiled.
///
/// ```
/// use lockprof::ProfiledAsyncRwLock as RwLock; // was: use tokio::sync::RwLock;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let config = RwLock::new(String::from("a"));
/// config.write().await.push('b');
/// assert_eq!(*config.read().await, "ab");
/// # }
/// ```
///
/// Profiles label its samples `lock mode: read` or `lock mode: write`. As for
/// the sync read-write lock, write acquisitions are counted exactly and read
/// acquisitions are estimated from the samples.
pub struct ProfiledAsyncRwLock<T: ?Sized> {
    sem: Semaphore,
    handle: LockHandle,
    data: UnsafeCell<T>,
}

// SAFETY: as tokio's RwLock: readers share `&T`, a writer has `&mut T` alone.
unsafe impl<T: ?Sized + Send> Send for ProfiledAsyncRwLock<T> {}
// SAFETY: as above; readers on several threads share `&T`, hence `T: Sync`.
unsafe impl<T: ?Sized + Send + Sync> Sync for ProfiledAsyncRwLock<T> {}

/// The shared guard of [`ProfiledAsyncRwLock::read`]; the lock is released when
/// it drops.
#[must_use = "if unused the RwLock will immediately unlock"]
pub struct ProfiledAsyncRwLockReadGuard<'a, T: ?Sized> {
    lock: &'a ProfiledAsyncRwLock<T>,
    ticket: Ticket,
    _no_auto_traits: PhantomData<*const ()>,
}

// SAFETY: as tokio's guard: moving it moves shared access to `T`.
unsafe impl<T: ?Sized + Sync> Send for ProfiledAsyncRwLockReadGuard<'_, T> {}
// SAFETY: sharing the guard only shares `&T`.
unsafe impl<T: ?Sized + Sync> Sync for ProfiledAsyncRwLockReadGuard<'_, T> {}

impl<T: ?Sized> Deref for ProfiledAsyncRwLockReadGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for ProfiledAsyncRwLockReadGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        let lock = self.lock;
        task::release(self.ticket, &lock.handle, Mode::Read, || lock.sem.add_permits(1));
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for ProfiledAsyncRwLockReadGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Display> fmt::Display for ProfiledAsyncRwLockReadGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}

/// The shared guard of [`ProfiledAsyncRwLock::read_owned`]; keeps the lock alive
/// through an `Arc`.
#[must_use = "if unused the RwLock will immediately unlock"]
pub struct OwnedProfiledAsyncRwLockReadGuard<T: ?Sized> {
    lock: Arc<ProfiledAsyncRwLock<T>>,
    ticket: Ticket,
    _no_auto_traits: PhantomData<*const ()>,
}

// SAFETY: as tokio's guard: moving it moves shared access to `T`.
unsafe impl<T: ?Sized + Sync> Send for OwnedProfiledAsyncRwLockReadGuard<T> {}
// SAFETY: sharing the guard only shares `&T`.
unsafe impl<T: ?Sized + Sync> Sync for OwnedProfiledAsyncRwLockReadGuard<T> {}

impl<T: ?Sized> Deref for OwnedProfiledAsyncRwLockReadGuard<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for OwnedProfiledAsyncRwLockReadGuard<T> {
    #[inline]
    fn drop(&mut self) {
        let lock = &*self.lock;
        task::release(self.ticket, &lock.handle, Mode::Read, || lock.sem.add_permits(1));
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for OwnedProfiledAsyncRwLockReadGuard<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Display> fmt::Display for OwnedProfiledAsyncRwLockReadGuard<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}

/// The exclusive guard of [`ProfiledAsyncRwLock::write`]; the lock is released when
/// it drops.
#[must_use = "if unused the RwLock will immediately unlock"]
pub struct ProfiledAsyncRwLockWriteGuard<'a, T: ?Sized> {
    lock: &'a ProfiledAsyncRwLock<T>,
    ticket: Ticket,
    _no_auto_traits: PhantomData<*const ()>,
}

// SAFETY: as tokio's guard: moving it moves exclusive access to `T`.
unsafe impl<T: ?Sized + Send + Sync> Send for ProfiledAsyncRwLockWriteGuard<'_, T> {}
// SAFETY: sharing the guard only shares `&T`.
unsafe impl<T: ?Sized + Send + Sync> Sync for ProfiledAsyncRwLockWriteGuard<'_, T> {}

impl<T: ?Sized> Deref for ProfiledAsyncRwLockWriteGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> DerefMut for ProfiledAsyncRwLockWriteGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the lock exclusively.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for ProfiledAsyncRwLockWriteGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        let lock = self.lock;
        task::release(self.ticket, &lock.handle, Mode::Write, || {
            lock.sem.add_permits(MAX_READS as usize)
        });
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for ProfiledAsyncRwLockWriteGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Display> fmt::Display for ProfiledAsyncRwLockWriteGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}

/// The exclusive guard of [`ProfiledAsyncRwLock::write_owned`]; keeps the lock alive
/// through an `Arc`.
#[must_use = "if unused the RwLock will immediately unlock"]
pub struct OwnedProfiledAsyncRwLockWriteGuard<T: ?Sized> {
    lock: Arc<ProfiledAsyncRwLock<T>>,
    ticket: Ticket,
    _no_auto_traits: PhantomData<*const ()>,
}

// SAFETY: as tokio's guard: moving it moves exclusive access to `T`.
unsafe impl<T: ?Sized + Send + Sync> Send for OwnedProfiledAsyncRwLockWriteGuard<T> {}
// SAFETY: sharing the guard only shares `&T`.
unsafe impl<T: ?Sized + Send + Sync> Sync for OwnedProfiledAsyncRwLockWriteGuard<T> {}

impl<T: ?Sized> Deref for OwnedProfiledAsyncRwLockWriteGuard<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> DerefMut for OwnedProfiledAsyncRwLockWriteGuard<T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the lock exclusively.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for OwnedProfiledAsyncRwLockWriteGuard<T> {
    #[inline]
    fn drop(&mut self) {
        let lock = &*self.lock;
        task::release(self.ticket, &lock.handle, Mode::Write, || {
            lock.sem.add_permits(MAX_READS as usize)
        });
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for OwnedProfiledAsyncRwLockWriteGuard<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Display> fmt::Display for OwnedProfiledAsyncRwLockWriteGuard<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}

impl<T> ProfiledAsyncRwLock<T> {
    /// Creates an unlocked lock; its site is the caller's file and line.
    /// Usable in `static`s.
    #[track_caller]
    #[inline]
    pub const fn new(value: T) -> Self {
        ProfiledAsyncRwLock {
            sem: Semaphore::const_new(MAX_READS as usize),
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

    /// Consumes the lock, returning the data.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: ?Sized> ProfiledAsyncRwLock<T> {
    /// Locks for reading, waiting (asynchronously) while a writer holds or
    /// waits for the lock. Cancel safe; a cancelled wait records nothing.
    pub async fn read(&self) -> ProfiledAsyncRwLockReadGuard<'_, T> {
        let ticket = task::lock(&self.sem, 1, &self.handle, Mode::Read).await;
        ProfiledAsyncRwLockReadGuard {
            lock: self,
            ticket,
            _no_auto_traits: PhantomData,
        }
    }

    /// Attempts to lock for reading without waiting.
    /// A failed attempt is not recorded.
    #[inline]
    pub fn try_read(&self) -> Result<ProfiledAsyncRwLockReadGuard<'_, T>, AsyncTryLockError> {
        match task::try_acquire(&self.sem, 1, &self.handle, Mode::Read) {
            Ok(ticket) => Ok(ProfiledAsyncRwLockReadGuard {
                lock: self,
                ticket,
                _no_auto_traits: PhantomData,
            }),
            Err(_) => Err(AsyncTryLockError(())),
        }
    }

    /// Locks for reading, returning a guard that owns an `Arc` of the
    /// lock.
    pub async fn read_owned(self: Arc<Self>) -> OwnedProfiledAsyncRwLockReadGuard<T> {
        let ticket = task::lock(&self.sem, 1, &self.handle, Mode::Read).await;
        OwnedProfiledAsyncRwLockReadGuard {
            lock: self,
            ticket,
            _no_auto_traits: PhantomData,
        }
    }

    /// Attempts to lock for reading without waiting, returning an owned guard.
    /// A failed attempt is not recorded.
    #[inline]
    pub fn try_read_owned(
        self: Arc<Self>,
    ) -> Result<OwnedProfiledAsyncRwLockReadGuard<T>, AsyncTryLockError> {
        match task::try_acquire(&self.sem, 1, &self.handle, Mode::Read) {
            Ok(ticket) => Ok(OwnedProfiledAsyncRwLockReadGuard {
                lock: self,
                ticket,
                _no_auto_traits: PhantomData,
            }),
            Err(_) => Err(AsyncTryLockError(())),
        }
    }

    /// Locks for writing, waiting (asynchronously) until no reader or writer
    /// holds it. Cancel safe; a cancelled wait records nothing.
    pub async fn write(&self) -> ProfiledAsyncRwLockWriteGuard<'_, T> {
        let ticket = task::lock(&self.sem, MAX_READS, &self.handle, Mode::Write).await;
        ProfiledAsyncRwLockWriteGuard {
            lock: self,
            ticket,
            _no_auto_traits: PhantomData,
        }
    }

    /// Attempts to lock for writing without waiting.
    /// A failed attempt is not recorded.
    #[inline]
    pub fn try_write(&self) -> Result<ProfiledAsyncRwLockWriteGuard<'_, T>, AsyncTryLockError> {
        match task::try_acquire(&self.sem, MAX_READS, &self.handle, Mode::Write) {
            Ok(ticket) => Ok(ProfiledAsyncRwLockWriteGuard {
                lock: self,
                ticket,
                _no_auto_traits: PhantomData,
            }),
            Err(_) => Err(AsyncTryLockError(())),
        }
    }

    /// Locks for writing, returning a guard that owns an `Arc` of the
    /// lock.
    pub async fn write_owned(self: Arc<Self>) -> OwnedProfiledAsyncRwLockWriteGuard<T> {
        let ticket = task::lock(&self.sem, MAX_READS, &self.handle, Mode::Write).await;
        OwnedProfiledAsyncRwLockWriteGuard {
            lock: self,
            ticket,
            _no_auto_traits: PhantomData,
        }
    }

    /// Attempts to lock for writing without waiting, returning an owned guard.
    /// A failed attempt is not recorded.
    #[inline]
    pub fn try_write_owned(
        self: Arc<Self>,
    ) -> Result<OwnedProfiledAsyncRwLockWriteGuard<T>, AsyncTryLockError> {
        match task::try_acquire(&self.sem, MAX_READS, &self.handle, Mode::Write) {
            Ok(ticket) => Ok(OwnedProfiledAsyncRwLockWriteGuard {
                lock: self,
                ticket,
                _no_auto_traits: PhantomData,
            }),
            Err(_) => Err(AsyncTryLockError(())),
        }
    }

    /// Locks for reading from synchronous code, blocking the thread. Do not
    /// call it from an async task.
    pub fn blocking_read(&self) -> ProfiledAsyncRwLockReadGuard<'_, T> {
        super::block_on(self.read())
    }

    /// Locks for writing from synchronous code, blocking the thread. Do not
    /// call it from an async task.
    pub fn blocking_write(&self) -> ProfiledAsyncRwLockWriteGuard<'_, T> {
        super::block_on(self.write())
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

crate::naming::lock_type_impls!(ProfiledAsyncRwLock);

impl<T: ?Sized + fmt::Debug> fmt::Debug for ProfiledAsyncRwLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ProfiledAsyncRwLock");
        d.field("site", self.handle.site());
        // Not recorded: a plain try on the semaphore, released on drop.
        match self.sem.try_acquire() {
            Ok(_permit) => {
                // SAFETY: the read permit held here excludes writers.
                d.field("data", &unsafe { &*self.data.get() });
            }
            Err(_) => {
                d.field("data", &format_args!("<locked>"));
            }
        }
        d.finish_non_exhaustive()
    }
}
