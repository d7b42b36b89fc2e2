//! Profiled tokio locks (feature `tokio`): thin generic wrappers over a
//! tokio [`Semaphore`](tokio::sync::Semaphore), the primitive tokio's own
//! `Mutex` and `RwLock` are built on, calling the non-generic async recording
//! core in `record::task`.
//!
//! Building on the semaphore rather than on tokio's lock types gives the same
//! fairness (a FIFO queue of waiters) and lets guards, owned guards and
//! permits release with `add_permits` from a `Drop` that records the hold.

use std::sync::Arc;

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
