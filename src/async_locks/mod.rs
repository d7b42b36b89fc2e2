//! Profiled tokio locks (feature `tokio`): thin generic wrappers over a
//! tokio [`Semaphore`](tokio::sync::Semaphore), the primitive tokio's own
//! `Mutex` and `RwLock` are built on, calling the non-generic async recording
//! core in `record::task`.
//!
//! Building on the semaphore rather than on tokio's lock types gives the same
//! fairness (a FIFO queue of waiters) and lets guards, owned guards and
//! permits release with `add_permits` from a `Drop` that records the hold.
//! Every lock is a [`Raw`] (the semaphore and the lock's profile handle) and
//! its data; every guard type comes from [`guard!`].

use std::sync::Arc;

use tokio::sync::{AcquireError, Semaphore, TryAcquireError};

use crate::record::{task, LockHandle, Mode, StatsSlot, Ticket};
use crate::site::LockSite;

mod mutex;
mod named_task;
mod rwlock;
mod semaphore;

pub use mutex::{OwnedProfiledAsyncMutexGuard, ProfiledAsyncMutex, ProfiledAsyncMutexGuard};
pub use named_task::{with_task_name, NamedTask};
pub use rwlock::{
    OwnedProfiledAsyncRwLockReadGuard, OwnedProfiledAsyncRwLockWriteGuard, ProfiledAsyncRwLock,
    ProfiledAsyncRwLockReadGuard, ProfiledAsyncRwLockWriteGuard,
};
pub use semaphore::{OwnedProfiledSemaphorePermit, ProfiledSemaphore, ProfiledSemaphorePermit};

/// The error of a `try_lock`, `try_read` or `try_write` on an async lock that
/// is held: tokio's `TryLockError` cannot be built outside tokio, so the
/// profiled locks return this one, which prints the same message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsyncTryLockError(());

impl std::fmt::Display for AsyncTryLockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("operation would block")
    }
}

impl std::error::Error for AsyncTryLockError {}

/// How a lock is taken: how many of its semaphore's permits, in which mode.
#[derive(Clone, Copy)]
struct Side {
    permits: u32,
    mode: Mode,
}

/// What every async lock is made of: the semaphore, and the lock's handle
/// for profiles. Each operation is one call into `record::task`.
struct Raw {
    sem: Semaphore,
    site: LockSite,
    stats: StatsSlot,
}

impl Raw {
    /// The lock's site and count slot, for the recording core.
    #[inline(always)]
    fn handle(&self) -> LockHandle<'_> {
        LockHandle::new(&self.site, &self.stats)
    }

    #[track_caller]
    #[inline]
    const fn new(permits: usize) -> Raw {
        Raw {
            sem: Semaphore::const_new(permits),
            site: LockSite::caller(),
            stats: StatsSlot::new(),
        }
    }

    const fn named(mut self, name: &'static str) -> Raw {
        self.site = self.site.with_name(name);
        self
    }

    /// Waits for `side`; fails only if the semaphore is closed.
    async fn acquire(&self, side: Side) -> Result<Ticket, AcquireError> {
        task::acquire(&self.sem, side.permits, self.handle(), side.mode).await
    }

    /// Takes `side` if it is free; a failed attempt records nothing.
    #[inline]
    fn try_acquire(&self, side: Side) -> Result<Ticket, TryAcquireError> {
        task::try_acquire(&self.sem, side.permits, self.handle(), side.mode)
    }

    /// Waits for `side` of a lock, whose semaphore is never closed.
    async fn lock(&self, side: Side) -> Ticket {
        task::lock(&self.sem, side.permits, self.handle(), side.mode).await
    }

    /// [`try_acquire`](Self::try_acquire) with a lock's error.
    #[inline]
    fn try_lock(&self, side: Side) -> Result<Ticket, AsyncTryLockError> {
        self.try_acquire(side).map_err(|_| AsyncTryLockError(()))
    }

    /// Gives `side` back, recording the hold if the acquisition was sampled.
    #[inline(always)]
    fn release(&self, ticket: Ticket, side: Side) {
        task::release(ticket, self.handle(), side.mode, || {
            self.sem.add_permits(side.permits as usize)
        });
    }
}

/// A guard type of an async lock: the lock, borrowed or in an `Arc`, and the
/// acquisition's ticket. It derefs to the lock's data (mutably with `mut`)
/// and gives `$side` back when dropped; it is `Send` and `Sync` for the
/// bounds given, as tokio's guard of the same kind.
macro_rules! guard {
    (
        $(#[$attr:meta])*
        $guard:ident<$($lt:lifetime,)? T>($lock:ty, $side:expr),
        Send if T: [$($send:tt)+], Sync if T: [$($sync:tt)+] $(, $mut:ident)?
    ) => {
        $(#[$attr])*
        pub struct $guard<$($lt,)? T: ?Sized> {
            lock: $lock,
            ticket: $crate::record::Ticket,
            _no_auto_traits: ::std::marker::PhantomData<*const ()>,
        }

        // SAFETY: moving the guard moves the access to `T` it grants
        // (exclusive, or shared for a read guard): the bounds are tokio's.
        unsafe impl<$($lt,)? T: ?Sized + $($send)+> Send for $guard<$($lt,)? T> {}
        // SAFETY: sharing the guard only shares `&T`: the bounds are tokio's.
        unsafe impl<$($lt,)? T: ?Sized + $($sync)+> Sync for $guard<$($lt,)? T> {}

        impl<$($lt,)? T: ?Sized> $guard<$($lt,)? T> {
            fn new(lock: $lock, ticket: $crate::record::Ticket) -> Self {
                $guard {
                    lock,
                    ticket,
                    _no_auto_traits: ::std::marker::PhantomData,
                }
            }
        }

        impl<$($lt,)? T: ?Sized> ::std::ops::Deref for $guard<$($lt,)? T> {
            type Target = T;
            #[inline]
            fn deref(&self) -> &T {
                // SAFETY: the guard holds the lock.
                unsafe { &*self.lock.data.get() }
            }
        }

        guard!(@deref_mut [$($mut)?] $guard<$($lt,)? T>);

        impl<$($lt,)? T: ?Sized> Drop for $guard<$($lt,)? T> {
            #[inline]
            fn drop(&mut self) {
                self.lock.raw.release(self.ticket, $side);
            }
        }

        impl<$($lt,)? T: ?Sized + ::std::fmt::Debug> ::std::fmt::Debug for $guard<$($lt,)? T> {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                ::std::fmt::Debug::fmt(&**self, f)
            }
        }

        impl<$($lt,)? T: ?Sized + ::std::fmt::Display> ::std::fmt::Display for $guard<$($lt,)? T> {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                ::std::fmt::Display::fmt(&**self, f)
            }
        }
    };
    (@deref_mut [] $guard:ident<$($lt:lifetime,)? T>) => {};
    (@deref_mut [mut] $guard:ident<$($lt:lifetime,)? T>) => {
        impl<$($lt,)? T: ?Sized> ::std::ops::DerefMut for $guard<$($lt,)? T> {
            #[inline]
            fn deref_mut(&mut self) -> &mut T {
                // SAFETY: the guard holds the lock exclusively.
                unsafe { &mut *self.lock.data.get() }
            }
        }
    };
}
use guard;

/// What the async mutex and read-write lock share besides their guards:
/// construction, naming, the data without locking, the site, `Debug`.
macro_rules! lock_common {
    ($lock:ident, $what:literal, $permits:expr) => {
        impl<T> $lock<T> {
            #[doc = concat!("Creates an unlocked ", $what, "; its site is the caller's file and line.")]
            /// Usable in `static`s.
            #[track_caller]
            #[inline]
            pub const fn new(value: T) -> Self {
                $lock {
                    raw: super::Raw::new($permits),
                    data: ::std::cell::UnsafeCell::new(value),
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
                self.raw = self.raw.named(name);
                self
            }

            #[doc = concat!("Consumes the ", $what, ", returning the data.")]
            pub fn into_inner(self) -> T {
                self.data.into_inner()
            }
        }

        impl<T: ?Sized> $lock<T> {
            /// A mutable reference to the data, without locking: the borrow
            /// checker proves no guard exists.
            pub fn get_mut(&mut self) -> &mut T {
                self.data.get_mut()
            }

            /// Where the lock was created, and its name.
            pub fn site(&self) -> &$crate::LockSite {
                &self.raw.site
            }
        }

        $crate::naming::lock_type_impls!($lock, raw.site);

        impl<T: ?Sized + ::std::fmt::Debug> ::std::fmt::Debug for $lock<T> {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                let mut d = f.debug_struct(stringify!($lock));
                d.field("site", &self.raw.site);
                // Not recorded: a plain try on the semaphore, released on drop.
                match self.raw.sem.try_acquire() {
                    Ok(_permit) => {
                        // SAFETY: the permit held here excludes every
                        // exclusive guard, and shared guards only read.
                        d.field("data", &unsafe { &*self.data.get() });
                    }
                    Err(_) => {
                        d.field("data", &format_args!("<locked>"));
                    }
                }
                d.finish_non_exhaustive()
            }
        }
    };
}
use lock_common;

/// Runs a future to completion on this thread, for the `blocking_*`
/// methods. Allocates its waker: these methods are for synchronous code
/// outside the runtime, not for hot paths.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};

    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }

    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::park();
    }
}
