use std::sync::Arc;

use tokio::sync::{AcquireError, TryAcquireError};

use super::{Raw, Side};
use crate::record::{Mode, Ticket};
use crate::site::LockSite;

/// One acquisition of `n` permits.
fn permits(n: u32) -> Side {
    Side {
        permits: n,
        mode: Mode::Exclusive,
    }
}

/// A counting semaphore with `tokio::sync::Semaphore`'s API and semantics
/// (fair, closable, permits that may be held across `.await` and sent between
/// threads) whose acquisitions are profiled.
///
/// ```
/// use lockprof::ProfiledSemaphore as Semaphore; // was: use tokio::sync::Semaphore;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let connections = Semaphore::new(2);
/// let permit = connections.acquire().await.unwrap();
/// assert_eq!(connections.available_permits(), 1);
/// drop(permit);
/// # }
/// ```
///
/// Every acquisition (of one permit or several) counts as one acquisition,
/// counted exactly; the hold is the permit's lifetime. The errors are
/// tokio's own.
pub struct ProfiledSemaphore {
    raw: Raw,
}

/// A permit type: the semaphore, borrowed or in an `Arc`, the permits and
/// the acquisition's ticket; the permits go back when it drops.
macro_rules! permit {
    ($(#[$attr:meta])* $permit:ident$(<$lt:lifetime>)?($sem:ty)) => {
        $(#[$attr])*
        #[must_use = "if unused the permits are returned immediately"]
        pub struct $permit$(<$lt>)? {
            sem: $sem,
            permits: u32,
            ticket: Ticket,
        }

        impl$(<$lt>)? $permit$(<$lt>)? {
            fn new(sem: $sem, permits: u32, ticket: Ticket) -> Self {
                $permit { sem, permits, ticket }
            }

            /// Keeps the permits out of the semaphore for good. The hold of a
            /// forgotten permit is never recorded.
            pub fn forget(mut self) {
                self.permits = 0;
                self.ticket = Ticket::NONE;
            }

            /// How many permits this holds.
            pub fn num_permits(&self) -> usize {
                self.permits as usize
            }
        }

        impl$(<$lt>)? Drop for $permit$(<$lt>)? {
            #[inline]
            fn drop(&mut self) {
                self.sem.raw.release(self.ticket, permits(self.permits));
            }
        }

        impl$(<$lt>)? std::fmt::Debug for $permit$(<$lt>)? {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($permit))
                    .field("site", self.sem.site())
                    .field("permits", &self.permits)
                    .finish()
            }
        }
    };
}

permit! {
    /// Permits from [`ProfiledSemaphore::acquire`]; returned when dropped.
    ProfiledSemaphorePermit<'a>(&'a ProfiledSemaphore)
}

permit! {
    /// Permits from [`ProfiledSemaphore::acquire_owned`]: keep the semaphore
    /// alive through an `Arc` and can be moved into a spawned task.
    OwnedProfiledSemaphorePermit(Arc<ProfiledSemaphore>)
}

impl ProfiledSemaphore {
    /// The most permits a semaphore can hold (tokio's limit).
    pub const MAX_PERMITS: usize = tokio::sync::Semaphore::MAX_PERMITS;

    /// Creates a semaphore with `permits` permits; its site is the caller's
    /// file and line. Usable in `static`s.
    ///
    /// # Panics
    /// As tokio's: if `permits` exceeds [`MAX_PERMITS`](Self::MAX_PERMITS).
    #[track_caller]
    #[inline]
    pub const fn new(permits: usize) -> Self {
        ProfiledSemaphore {
            raw: Raw::new(permits),
        }
    }

    /// The same as [`new`](Self::new), under tokio's name for it.
    #[track_caller]
    #[inline]
    pub const fn const_new(permits: usize) -> Self {
        Self::new(permits)
    }

    /// Gives the semaphore a variable name for profiles (usable in
    /// `static`s).
    pub const fn named(mut self, name: &'static str) -> Self {
        self.raw = self.raw.named(name);
        self
    }

    /// The permits available now.
    pub fn available_permits(&self) -> usize {
        self.raw.sem.available_permits()
    }

    /// Adds `n` permits.
    ///
    /// # Panics
    /// As tokio's: if the total would exceed [`MAX_PERMITS`](Self::MAX_PERMITS).
    pub fn add_permits(&self, n: usize) {
        self.raw.sem.add_permits(n)
    }

    /// Removes up to `n` available permits; returns how many were removed.
    pub fn forget_permits(&self, n: usize) -> usize {
        self.raw.sem.forget_permits(n)
    }

    /// Closes the semaphore: waiting and later acquisitions fail.
    pub fn close(&self) {
        self.raw.sem.close()
    }

    /// Whether the semaphore is closed.
    pub fn is_closed(&self) -> bool {
        self.raw.sem.is_closed()
    }

    /// Acquires one permit, waiting (asynchronously) until one is available.
    /// Cancel safe; a cancelled wait records nothing.
    pub async fn acquire(&self) -> Result<ProfiledSemaphorePermit<'_>, AcquireError> {
        self.acquire_many(1).await
    }

    /// Acquires `n` permits at once (one acquisition in the profile).
    pub async fn acquire_many(&self, n: u32) -> Result<ProfiledSemaphorePermit<'_>, AcquireError> {
        let ticket = self.raw.acquire(permits(n)).await?;
        Ok(ProfiledSemaphorePermit::new(self, n, ticket))
    }

    /// Tries to acquire one permit without waiting. A failed attempt is not
    /// recorded.
    #[inline]
    pub fn try_acquire(&self) -> Result<ProfiledSemaphorePermit<'_>, TryAcquireError> {
        self.try_acquire_many(1)
    }

    /// Tries to acquire `n` permits without waiting.
    #[inline]
    pub fn try_acquire_many(&self, n: u32) -> Result<ProfiledSemaphorePermit<'_>, TryAcquireError> {
        let ticket = self.raw.try_acquire(permits(n))?;
        Ok(ProfiledSemaphorePermit::new(self, n, ticket))
    }

    /// Acquires one permit, returning it with an `Arc` of the semaphore.
    pub async fn acquire_owned(self: Arc<Self>) -> Result<OwnedProfiledSemaphorePermit, AcquireError> {
        self.acquire_many_owned(1).await
    }

    /// Acquires `n` permits, returned with an `Arc` of the semaphore.
    pub async fn acquire_many_owned(
        self: Arc<Self>,
        n: u32,
    ) -> Result<OwnedProfiledSemaphorePermit, AcquireError> {
        let ticket = self.raw.acquire(permits(n)).await?;
        Ok(OwnedProfiledSemaphorePermit::new(self, n, ticket))
    }

    /// Tries to acquire one permit without waiting, returned with an `Arc` of
    /// the semaphore.
    #[inline]
    pub fn try_acquire_owned(self: Arc<Self>) -> Result<OwnedProfiledSemaphorePermit, TryAcquireError> {
        self.try_acquire_many_owned(1)
    }

    /// Tries to acquire `n` permits without waiting, returned with an `Arc`
    /// of the semaphore.
    #[inline]
    pub fn try_acquire_many_owned(
        self: Arc<Self>,
        n: u32,
    ) -> Result<OwnedProfiledSemaphorePermit, TryAcquireError> {
        let ticket = self.raw.try_acquire(permits(n))?;
        Ok(OwnedProfiledSemaphorePermit::new(self, n, ticket))
    }

    /// Where the semaphore was created, and its name.
    pub fn site(&self) -> &LockSite {
        &self.raw.site
    }
}

impl crate::naming::Nameable for ProfiledSemaphore {
    fn set_name(&mut self, name: &'static str) {
        self.raw.site = self.raw.site.with_name(name);
    }
}

impl std::fmt::Debug for ProfiledSemaphore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProfiledSemaphore")
            .field("site", &self.raw.site)
            .field("permits", &self.raw.sem.available_permits())
            .finish_non_exhaustive()
    }
}

impl<'a> ProfiledSemaphorePermit<'a> {
    /// The semaphore the permits came from.
    pub fn semaphore(&self) -> &'a ProfiledSemaphore {
        self.sem
    }
}

impl OwnedProfiledSemaphorePermit {
    /// The semaphore the permits came from.
    pub fn semaphore(&self) -> &Arc<ProfiledSemaphore> {
        &self.sem
    }
}
