//! The lock types: thin generic wrappers over `parking_lot`'s raw locks that
//! call into the non-generic recording core.

mod condvar;
mod mutex;
mod poison;
mod raw;
mod reentrant;
mod rwlock;

pub use condvar::{ProfiledCondvar, WaitTimeoutResult};
pub use mutex::{ProfiledMutex, ProfiledMutexGuard};
pub use reentrant::{ProfiledReentrantMutex, ProfiledReentrantMutexGuard};
pub use rwlock::{ProfiledRwLock, ProfiledRwLockReadGuard, ProfiledRwLockWriteGuard};
