//! Poisoning exactly as `std::sync`: a panic while a guard is held marks the
//! lock, and later acquisitions return `Err(PoisonError)` wrapping the guard.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{LockResult, PoisonError};
use std::thread;

#[derive(Debug)]
pub(crate) struct Flag {
    failed: AtomicBool,
}

/// Whether the thread was already panicking when it took the guard: only a
/// panic that starts while the guard is held poisons.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Guard {
    panicking: bool,
}

impl Flag {
    pub(crate) const fn new() -> Flag {
        Flag {
            failed: AtomicBool::new(false),
        }
    }

    #[inline]
    pub(crate) fn guard(&self) -> LockResult<Guard> {
        let guard = Guard {
            panicking: thread::panicking(),
        };
        if self.get() {
            Err(PoisonError::new(guard))
        } else {
            Ok(guard)
        }
    }

    #[inline]
    pub(crate) fn done(&self, guard: &Guard) {
        if !guard.panicking && thread::panicking() {
            self.failed.store(true, Relaxed);
        }
    }

    #[inline]
    pub(crate) fn get(&self) -> bool {
        self.failed.load(Relaxed)
    }

    #[inline]
    pub(crate) fn clear(&self) {
        self.failed.store(false, Relaxed)
    }
}

/// Maps the value inside a `LockResult`, keeping its poisoned state.
#[inline]
pub(crate) fn map_result<T, U>(result: LockResult<T>, f: impl FnOnce(T) -> U) -> LockResult<U> {
    match result {
        Ok(t) => Ok(f(t)),
        Err(e) => Err(PoisonError::new(f(e.into_inner()))),
    }
}
