use std::fmt;
use std::sync::LockResult;
use std::time::{Duration, Instant};

use super::mutex::ProfiledMutexGuard;
use super::poison::map_result;

/// A condition variable with `std::sync::Condvar`'s API, for
/// [`ProfiledMutexGuard`]s.
///
/// While a thread waits, its mutex is released: the wait is not hold time.
/// Re-acquiring the mutex after the wake-up is an acquisition like any other,
/// recorded with its own wait if it is contended.
///
/// ```
/// use lockprof::{ProfiledCondvar as Condvar, ProfiledMutex as Mutex};
/// use std::sync::Arc;
///
/// let pair = Arc::new((Mutex::new(false), Condvar::new()));
/// let pair2 = Arc::clone(&pair);
/// std::thread::spawn(move || {
///     *pair2.0.lock().unwrap() = true;
///     pair2.1.notify_one();
/// });
/// let (lock, cvar) = &*pair;
/// let ready = cvar.wait_while(lock.lock().unwrap(), |ready| !*ready).unwrap();
/// assert!(*ready);
/// ```
pub struct ProfiledCondvar {
    cv: parking_lot::Condvar,
    // Held from before the user's mutex is released until the waiter is
    // parked, and by notifiers: a notification can never fall between the two.
    gate: parking_lot::Mutex<()>,
}

/// Whether a timed wait on a [`ProfiledCondvar`] ended by timing out, as
/// `std::sync::WaitTimeoutResult`.
#[derive(Debug, PartialEq, Eq, Copy, Clone)]
pub struct WaitTimeoutResult(bool);

impl WaitTimeoutResult {
    /// True if the wait ended because the timeout elapsed.
    pub fn timed_out(&self) -> bool {
        self.0
    }
}

impl ProfiledCondvar {
    /// Creates a condition variable.
    pub const fn new() -> Self {
        ProfiledCondvar {
            cv: parking_lot::Condvar::new(),
            gate: parking_lot::Mutex::new(()),
        }
    }

    /// Releases the guard's mutex, blocks until notified, and re-acquires it.
    /// May wake spuriously, as std's.
    pub fn wait<'a, T: ?Sized>(
        &self,
        guard: ProfiledMutexGuard<'a, T>,
    ) -> LockResult<ProfiledMutexGuard<'a, T>> {
        let lock = guard.lock;
        let mut gate = self.gate.lock();
        drop(guard);
        self.cv.wait(&mut gate);
        drop(gate);
        lock.lock()
    }

    /// Waits until `condition` returns false for the protected value.
    pub fn wait_while<'a, T: ?Sized, F>(
        &self,
        mut guard: ProfiledMutexGuard<'a, T>,
        mut condition: F,
    ) -> LockResult<ProfiledMutexGuard<'a, T>>
    where
        F: FnMut(&mut T) -> bool,
    {
        while condition(&mut *guard) {
            guard = self.wait(guard)?;
        }
        Ok(guard)
    }

    /// Like [`wait`](Self::wait), giving up after `dur`.
    pub fn wait_timeout<'a, T: ?Sized>(
        &self,
        guard: ProfiledMutexGuard<'a, T>,
        dur: Duration,
    ) -> LockResult<(ProfiledMutexGuard<'a, T>, WaitTimeoutResult)> {
        let lock = guard.lock;
        let mut gate = self.gate.lock();
        drop(guard);
        let timed_out = self.cv.wait_for(&mut gate, dur).timed_out();
        drop(gate);
        map_result(lock.lock(), |g| (g, WaitTimeoutResult(timed_out)))
    }

    /// Waits until `condition` returns false, or `dur` elapses.
    pub fn wait_timeout_while<'a, T: ?Sized, F>(
        &self,
        mut guard: ProfiledMutexGuard<'a, T>,
        dur: Duration,
        mut condition: F,
    ) -> LockResult<(ProfiledMutexGuard<'a, T>, WaitTimeoutResult)>
    where
        F: FnMut(&mut T) -> bool,
    {
        let deadline = Instant::now().checked_add(dur);
        loop {
            if !condition(&mut *guard) {
                return Ok((guard, WaitTimeoutResult(false)));
            }
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::MAX,
            };
            if left.is_zero() {
                return Ok((guard, WaitTimeoutResult(true)));
            }
            let (g, _) = self.wait_timeout(guard, left)?;
            guard = g;
        }
    }

    /// Wakes one waiting thread.
    pub fn notify_one(&self) {
        let _gate = self.gate.lock();
        self.cv.notify_one();
    }

    /// Wakes all waiting threads.
    pub fn notify_all(&self) {
        let _gate = self.gate.lock();
        self.cv.notify_all();
    }
}

impl Default for ProfiledCondvar {
    fn default() -> Self {
        ProfiledCondvar::new()
    }
}

impl fmt::Debug for ProfiledCondvar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProfiledCondvar").finish_non_exhaustive()
    }
}
