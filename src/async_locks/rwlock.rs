use std::cell::UnsafeCell;
use std::sync::Arc;

use super::{guard, lock_common, AsyncTryLockError, Raw, Side};
use crate::record::Mode;

/// Permits of the semaphore: a reader takes one, a writer all (as tokio's
/// `RwLock`).
const MAX_READS: u32 = u32::MAX >> 3;

const READ: Side = Side {
    permits: 1,
    mode: Mode::Read,
};

const WRITE: Side = Side {
    permits: MAX_READS,
    mode: Mode::Write,
};

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
    raw: Raw,
    data: UnsafeCell<T>,
}

// SAFETY: as tokio's RwLock: readers share `&T`, a writer has `&mut T` alone.
unsafe impl<T: ?Sized + Send> Send for ProfiledAsyncRwLock<T> {}
// SAFETY: as above; readers on several threads share `&T`, hence `T: Sync`.
unsafe impl<T: ?Sized + Send + Sync> Sync for ProfiledAsyncRwLock<T> {}

guard! {
    /// The shared guard of [`ProfiledAsyncRwLock::read`]; the lock is released when
    /// it drops.
    #[must_use = "if unused the RwLock will immediately unlock"]
    ProfiledAsyncRwLockReadGuard<'a, T>(&'a ProfiledAsyncRwLock<T>, READ),
    Send if T: [Sync], Sync if T: [Sync]
}

guard! {
    /// The shared guard of [`ProfiledAsyncRwLock::read_owned`]; keeps the lock alive
    /// through an `Arc`.
    #[must_use = "if unused the RwLock will immediately unlock"]
    OwnedProfiledAsyncRwLockReadGuard<T>(Arc<ProfiledAsyncRwLock<T>>, READ),
    Send if T: [Sync], Sync if T: [Sync]
}

guard! {
    /// The exclusive guard of [`ProfiledAsyncRwLock::write`]; the lock is released when
    /// it drops.
    #[must_use = "if unused the RwLock will immediately unlock"]
    ProfiledAsyncRwLockWriteGuard<'a, T>(&'a ProfiledAsyncRwLock<T>, WRITE),
    Send if T: [Send + Sync], Sync if T: [Send + Sync], mut
}

guard! {
    /// The exclusive guard of [`ProfiledAsyncRwLock::write_owned`]; keeps the lock alive
    /// through an `Arc`.
    #[must_use = "if unused the RwLock will immediately unlock"]
    OwnedProfiledAsyncRwLockWriteGuard<T>(Arc<ProfiledAsyncRwLock<T>>, WRITE),
    Send if T: [Send + Sync], Sync if T: [Send + Sync], mut
}

lock_common!(ProfiledAsyncRwLock, "lock", MAX_READS as usize);

impl<T: ?Sized> ProfiledAsyncRwLock<T> {
    /// Locks for reading, waiting (asynchronously) while a writer holds or
    /// waits for the lock. Cancel safe; a cancelled wait records nothing.
    pub async fn read(&self) -> ProfiledAsyncRwLockReadGuard<'_, T> {
        ProfiledAsyncRwLockReadGuard::new(self, self.raw.lock(READ).await)
    }

    /// Attempts to lock for reading without waiting.
    /// A failed attempt is not recorded.
    #[inline]
    pub fn try_read(&self) -> Result<ProfiledAsyncRwLockReadGuard<'_, T>, AsyncTryLockError> {
        Ok(ProfiledAsyncRwLockReadGuard::new(self, self.raw.try_lock(READ)?))
    }

    /// Locks for reading, returning a guard that owns an `Arc` of the
    /// lock.
    pub async fn read_owned(self: Arc<Self>) -> OwnedProfiledAsyncRwLockReadGuard<T> {
        let ticket = self.raw.lock(READ).await;
        OwnedProfiledAsyncRwLockReadGuard::new(self, ticket)
    }

    /// Attempts to lock for reading without waiting, returning an owned guard.
    /// A failed attempt is not recorded.
    #[inline]
    pub fn try_read_owned(
        self: Arc<Self>,
    ) -> Result<OwnedProfiledAsyncRwLockReadGuard<T>, AsyncTryLockError> {
        let ticket = self.raw.try_lock(READ)?;
        Ok(OwnedProfiledAsyncRwLockReadGuard::new(self, ticket))
    }

    /// Locks for writing, waiting (asynchronously) until no reader or writer
    /// holds it. Cancel safe; a cancelled wait records nothing.
    pub async fn write(&self) -> ProfiledAsyncRwLockWriteGuard<'_, T> {
        ProfiledAsyncRwLockWriteGuard::new(self, self.raw.lock(WRITE).await)
    }

    /// Attempts to lock for writing without waiting.
    /// A failed attempt is not recorded.
    #[inline]
    pub fn try_write(&self) -> Result<ProfiledAsyncRwLockWriteGuard<'_, T>, AsyncTryLockError> {
        Ok(ProfiledAsyncRwLockWriteGuard::new(
            self,
            self.raw.try_lock(WRITE)?,
        ))
    }

    /// Locks for writing, returning a guard that owns an `Arc` of the
    /// lock.
    pub async fn write_owned(self: Arc<Self>) -> OwnedProfiledAsyncRwLockWriteGuard<T> {
        let ticket = self.raw.lock(WRITE).await;
        OwnedProfiledAsyncRwLockWriteGuard::new(self, ticket)
    }

    /// Attempts to lock for writing without waiting, returning an owned guard.
    /// A failed attempt is not recorded.
    #[inline]
    pub fn try_write_owned(
        self: Arc<Self>,
    ) -> Result<OwnedProfiledAsyncRwLockWriteGuard<T>, AsyncTryLockError> {
        let ticket = self.raw.try_lock(WRITE)?;
        Ok(OwnedProfiledAsyncRwLockWriteGuard::new(self, ticket))
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
}
