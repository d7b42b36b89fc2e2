//! A mutex in a `static` that a forked child can replace.
//!
//! A thread of the parent that held the lock at `fork()` does not exist in
//! the child, so the child's copy stays locked forever: a child that starts
//! its own profiler would hang on it. [`ForkSafeMutex::renew`] swaps in a
//! fresh mutex without ever blocking, keeping the contents when the old lock
//! was free.

use std::marker::PhantomData;
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering::*};

use parking_lot::{Mutex, MutexGuard};

/// A lazily allocated mutex behind a pointer that [`renew`](Self::renew)
/// replaces. Mutexes are never freed once shared (one per fork at most), so
/// a guard may borrow them for `'static`.
pub(crate) struct ForkSafeMutex<T: 'static> {
    current: AtomicPtr<Mutex<T>>,
    init: fn() -> T,
    /// Shared between threads exactly when a `Mutex<T>` may be.
    _marker: PhantomData<Mutex<T>>,
}

impl<T> ForkSafeMutex<T> {
    pub(crate) const fn new(init: fn() -> T) -> Self {
        ForkSafeMutex {
            current: AtomicPtr::new(ptr::null_mut()),
            init,
            _marker: PhantomData,
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'static, T> {
        self.get().lock()
    }

    fn get(&self) -> &'static Mutex<T> {
        let p = self.current.load(Acquire);
        if !p.is_null() {
            // SAFETY: a non-null pointer came from `Box::into_raw` below or
            // in `renew` and is never freed.
            return unsafe { &*p };
        }
        let fresh = Box::into_raw(Box::new(Mutex::new((self.init)())));
        match self
            .current
            .compare_exchange(ptr::null_mut(), fresh, AcqRel, Acquire)
        {
            // SAFETY: just published; never freed.
            Ok(_) => unsafe { &*fresh },
            Err(existing) => {
                // SAFETY: `fresh` came from `Box::into_raw` above and was
                // not published.
                drop(unsafe { Box::from_raw(fresh) });
                // SAFETY: as for `p` above.
                unsafe { &*existing }
            }
        }
    }

    /// Replaces the mutex in a forked child. The contents go through `keep`
    /// when the old mutex is free; when a thread of the parent held it at the
    /// fork, they may be half-updated and are replaced by `init`'s. Never
    /// blocks. The old mutex is leaked: no thread here will unlock it.
    pub(crate) fn renew(&self, keep: impl FnOnce(T) -> T) {
        let old = self.get();
        let value = match old.try_lock() {
            Some(mut guard) => keep(std::mem::replace(&mut *guard, (self.init)())),
            None => (self.init)(),
        };
        let fresh = Box::into_raw(Box::new(Mutex::new(value)));
        self.current.store(fresh, Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewing_keeps_free_contents_and_never_waits_for_a_held_lock() {
        static M: ForkSafeMutex<Vec<u32>> = ForkSafeMutex::new(Vec::new);
        M.lock().push(1);
        M.renew(|v| v);
        assert_eq!(*M.lock(), [1]);
        // As if a vanished thread held it at the fork.
        std::mem::forget(M.lock());
        M.renew(|v| v);
        assert!(M.lock().is_empty());
    }
}
