use std::cell::UnsafeCell;
use std::sync::Arc;

use super::{guard, lock_common, AsyncTryLockError, Raw, Side};
use crate::record::Mode;

/// The mutex's one permit.
const EXCLUSIVE: Side = Side {
    permits: 1,
    mode: Mode::Exclusive,
};

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
    raw: Raw,
    data: UnsafeCell<T>,
}

// SAFETY: as tokio's Mutex: the semaphore's single permit hands out `&mut T`
// to one holder at a time.
unsafe impl<T: ?Sized + Send> Send for ProfiledAsyncMutex<T> {}
// SAFETY: as above; `T: Send` suffices since only one holder accesses it.
unsafe impl<T: ?Sized + Send> Sync for ProfiledAsyncMutex<T> {}

guard! {
    /// The guard of a [`ProfiledAsyncMutex`]; the lock is released when it drops.
    #[must_use = "if unused the Mutex will immediately unlock"]
    ProfiledAsyncMutexGuard<'a, T>(&'a ProfiledAsyncMutex<T>, EXCLUSIVE),
    Send if T: [Send], Sync if T: [Send + Sync], mut
}

guard! {
    /// The guard of [`ProfiledAsyncMutex::lock_owned`]: keeps the mutex alive
    /// through an `Arc` and can be moved into a spawned task.
    #[must_use = "if unused the Mutex will immediately unlock"]
    OwnedProfiledAsyncMutexGuard<T>(Arc<ProfiledAsyncMutex<T>>, EXCLUSIVE),
    Send if T: [Send], Sync if T: [Send + Sync], mut
}

lock_common!(ProfiledAsyncMutex, "mutex", 1);

impl<T: ?Sized> ProfiledAsyncMutex<T> {
    /// Locks the mutex, waiting (asynchronously) until it is available.
    ///
    /// Cancel safe: a future dropped before it acquired the lock gives up its
    /// place in the queue and records nothing.
    pub async fn lock(&self) -> ProfiledAsyncMutexGuard<'_, T> {
        ProfiledAsyncMutexGuard::new(self, self.raw.lock(EXCLUSIVE).await)
    }

    /// Locks the mutex from synchronous code, blocking the thread. Do not
    /// call it from an async task (it would block a worker thread).
    pub fn blocking_lock(&self) -> ProfiledAsyncMutexGuard<'_, T> {
        super::block_on(self.lock())
    }

    /// Attempts to lock without waiting. A failed attempt is not recorded.
    #[inline]
    pub fn try_lock(&self) -> Result<ProfiledAsyncMutexGuard<'_, T>, AsyncTryLockError> {
        Ok(ProfiledAsyncMutexGuard::new(self, self.raw.try_lock(EXCLUSIVE)?))
    }

    /// Locks the mutex, returning a guard that owns an `Arc` of it.
    pub async fn lock_owned(self: Arc<Self>) -> OwnedProfiledAsyncMutexGuard<T> {
        let ticket = self.raw.lock(EXCLUSIVE).await;
        OwnedProfiledAsyncMutexGuard::new(self, ticket)
    }

    /// Attempts to lock without waiting, returning an owned guard. A failed
    /// attempt is not recorded.
    #[inline]
    pub fn try_lock_owned(self: Arc<Self>) -> Result<OwnedProfiledAsyncMutexGuard<T>, AsyncTryLockError> {
        let ticket = self.raw.try_lock(EXCLUSIVE)?;
        Ok(OwnedProfiledAsyncMutexGuard::new(self, ticket))
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
