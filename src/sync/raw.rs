//! The raw mutex under [`ProfiledMutex`](super::ProfiledMutex): one byte of
//! state over `parking_lot_core`'s parking lot, the same protocol as
//! `parking_lot::RawMutex` (spin briefly, then park; eventual fairness), with
//! the uncontended acquisition exposed on its own, and waits that can be
//! charged to the holders that caused them.
//!
//! Why our own: exact wait totals need every acquisition that waits to be
//! timed, and an acquisition must know whether it will wait without paying for
//! it. `parking_lot::RawMutex` offers `try_lock` (a load and a CAS loop) and
//! `lock` (one CAS, then its slow path), but not "one CAS, and tell me if it
//! failed": trying first and then locking measured 4 ns per acquisition more
//! than `lock` on a 5 ns lock. Here [`RawMutex::try_lock_fast`] is that one
//! CAS, and the caller's slow path times [`RawMutex::lock_slow`].
//!
//! Blame: a sampled waiter parks with a [`WaitRecord`] on its own stack as
//! its park token and sets `SAMPLED` in the state. An unlock that finds
//! `SAMPLED` (always in its slow path: the parked bit is set too) reads the
//! clock, charges each recorded waiter the part of its wait since it was last
//! charged, and hands the charges to its caller once the parking lot is let
//! go. Unlocks without a sampled waiter parked do what parking_lot's do.

use std::sync::atomic::{AtomicU8, Ordering::Acquire, Ordering::Relaxed, Ordering::Release};
use std::time::{Duration, Instant};

use parking_lot_core::{
    FilterOp, ParkResult, ParkToken, SpinWait, UnparkResult, UnparkToken, DEFAULT_PARK_TOKEN,
};

use crate::record::blame::{Charge, Charges, WaitRecord};

/// The lock is held.
const LOCKED: u8 = 1;
/// At least one thread is parked (or about to park) on this lock.
const PARKED: u8 = 2;
/// A parked thread has a [`WaitRecord`]: unlocks charge it. Set and cleared
/// only with the parking lot's queue locked (or with `PARKED`).
const SAMPLED: u8 = 4;

/// Unpark token: the lock was handed to the woken thread, still locked.
const HANDED_OFF: UnparkToken = UnparkToken(1);
/// Unpark token: the lock was released; the woken thread competes for it.
const RELEASED: UnparkToken = UnparkToken(0);

/// A mutual exclusion lock without data: `LOCKED` and `PARKED` bits.
pub(crate) struct RawMutex {
    state: AtomicU8,
}

impl RawMutex {
    /// An unlocked mutex.
    pub(crate) const fn new() -> RawMutex {
        RawMutex {
            state: AtomicU8::new(0),
        }
    }

    /// Takes the lock if it is free and no thread is queued: one CAS, the
    /// whole cost of an uncontended acquisition.
    #[inline(always)]
    pub(crate) fn try_lock_fast(&self) -> bool {
        // Strong, not weak: a spurious failure would be counted as a wait.
        self.state.compare_exchange(0, LOCKED, Acquire, Relaxed).is_ok()
    }

    /// Takes the lock if it is free, even with threads parked on it.
    #[inline]
    pub(crate) fn try_lock(&self) -> bool {
        let mut state = self.state.load(Relaxed);
        loop {
            if state & LOCKED != 0 {
                return false;
            }
            match self
                .state
                .compare_exchange_weak(state, state | LOCKED, Acquire, Relaxed)
            {
                Ok(_) => return true,
                Err(now) => state = now,
            }
        }
    }

    /// Blocks until the lock is taken.
    #[inline]
    pub(crate) fn lock(&self) {
        if !self.try_lock_fast() {
            self.lock_slow(None);
        }
    }

    /// Blocks at most `timeout`; `false` if the lock was not taken.
    #[inline]
    pub(crate) fn try_lock_for(&self, timeout: Duration) -> bool {
        self.try_lock_fast() || self.lock_slow(Instant::now().checked_add(timeout))
    }

    /// Whether some thread holds the lock.
    #[cfg(test)]
    pub(crate) fn is_locked(&self) -> bool {
        self.state.load(Relaxed) & LOCKED != 0
    }

    /// Releases the lock.
    ///
    /// # Safety
    /// The lock must be held by the caller (in the sense of this type's
    /// protocol: the holder of the last successful acquisition).
    #[cfg(test)]
    pub(crate) unsafe fn unlock(&self) {
        // SAFETY: this function's contract.
        unsafe { self.unlock_charging(|| 0, |_| {}) }
    }

    /// [`unlock`](Self::unlock), charging the parked sampled waiters (if
    /// any) with the part of their wait since they were last charged: `now`
    /// is read once, only when such a waiter is parked, and `charged`
    /// receives the charges after the lock is released and the parking lot's
    /// queue unlocked.
    ///
    /// # Safety
    /// As [`unlock`](Self::unlock).
    #[inline]
    pub(crate) unsafe fn unlock_charging(&self, now: impl Fn() -> u64, charged: impl FnOnce(&Charges)) {
        if self.state.compare_exchange(LOCKED, 0, Release, Relaxed).is_err() {
            // SAFETY: the caller holds the lock (this function's contract).
            unsafe { self.unlock_slow(now, charged) };
        }
    }

    /// The waiting part of an acquisition: spin a little while the holder
    /// may be about to release, then park until woken. `false` only when
    /// `deadline` passed.
    #[cold]
    #[inline(never)]
    pub(crate) fn lock_slow(&self, deadline: Option<Instant>) -> bool {
        self.lock_slow_timed(deadline, None, || 0).is_some()
    }

    /// [`lock_slow`](Self::lock_slow) for a caller that times its wait:
    /// `now` is read just before each CAS that may take the lock, and the
    /// reading of the one that did is returned, so that no clock read
    /// lengthens the critical section other threads are queued behind (only
    /// a fair hand-off, which arrives already held, reads it after). `None`
    /// only when `deadline` passed. A waiter with a `record` is charged to
    /// the holders it parks behind.
    #[inline]
    pub(crate) fn lock_slow_timed(
        &self,
        deadline: Option<Instant>,
        record: Option<&WaitRecord>,
        now: impl Fn() -> u64,
    ) -> Option<u64> {
        let token = record.map_or(DEFAULT_PARK_TOKEN, |r| ParkToken(r as *const WaitRecord as usize));
        let mut spin = SpinWait::new();
        let mut state = self.state.load(Relaxed);
        loop {
            if state & LOCKED == 0 {
                let at = now();
                match self
                    .state
                    .compare_exchange_weak(state, state | LOCKED, Acquire, Relaxed)
                {
                    Ok(_) if state & SAMPLED != 0 => {
                        self.hold_starts(at);
                        return Some(at);
                    }
                    Ok(_) => return Some(at),
                    Err(current) => state = current,
                }
                continue;
            }
            // Nobody queued yet: spinning is cheaper than parking if the
            // holder is about to release.
            if state & PARKED == 0 && spin.spin() {
                state = self.state.load(Relaxed);
                continue;
            }
            if state & PARKED == 0 {
                if let Err(current) =
                    self.state
                        .compare_exchange_weak(state, state | PARKED, Relaxed, Relaxed)
                {
                    state = current;
                    continue;
                }
            }
            let key = self.key();
            // Park only if the lock is still held with the parked bit set: an
            // unlock in between would otherwise wake nobody.
            let validate = || {
                let state = self.state.load(Relaxed);
                if state & (LOCKED | PARKED) != LOCKED | PARKED {
                    return false;
                }
                if record.is_some() && state & SAMPLED == 0 {
                    self.state.fetch_or(SAMPLED, Relaxed);
                }
                true
            };
            let timed_out = |_, was_last: bool| {
                if was_last {
                    self.state.fetch_and(!(PARKED | SAMPLED), Relaxed);
                }
            };
            // SAFETY: the key is this lock's own address, used only by this
            // type's protocol; the callbacks neither panic nor call into
            // `parking_lot_core`.
            // The record outlives its time in the queue: park returns only
            // once this thread has left it.
            let parked = unsafe { parking_lot_core::park(key, validate, || {}, timed_out, token, deadline) };
            match parked {
                ParkResult::Unparked(HANDED_OFF) => return Some(now()),
                ParkResult::Unparked(_) | ParkResult::Invalid => {}
                ParkResult::TimedOut => return None,
            }
            spin.reset();
            state = self.state.load(Relaxed);
        }
    }

    /// # Safety
    /// As [`unlock`](Self::unlock).
    #[cold]
    #[inline(never)]
    unsafe fn unlock_slow(&self, now: impl Fn() -> u64, charged: impl FnOnce(&Charges)) {
        if self.state.load(Relaxed) & SAMPLED == 0 {
            // SAFETY: the key is this lock's address; the callback neither
            // panics nor calls into `parking_lot_core`.
            unsafe {
                parking_lot_core::unpark_one(self.key(), |result| {
                    // A sampled waiter may have parked since the load above.
                    let sampled = self.state.load(Relaxed) & SAMPLED != 0;
                    self.after_unpark(result, sampled)
                })
            };
            return;
        }
        let released_at = now();
        let mut charges = Charges::new();
        let mut first = true;
        let sampled_left = std::cell::Cell::new(false);
        let filter = |token: ParkToken| {
            if token != DEFAULT_PARK_TOKEN {
                // SAFETY: a non-default token is the address of a parked
                // waiter's `WaitRecord`, which lives until that waiter has
                // left the queue, and the queue is locked while this runs.
                let record = unsafe { &*(token.0 as *const WaitRecord) };
                charges.push(Charge::since(record, released_at));
                sampled_left.set(sampled_left.get() || !first);
            }
            // Wake the first waiter, as `unpark_one` would; look at the rest.
            if std::mem::take(&mut first) {
                FilterOp::Unpark
            } else {
                FilterOp::Skip
            }
        };
        // SAFETY: the key is this lock's address; the filter and callback
        // neither panic nor call into `parking_lot_core`.
        unsafe {
            parking_lot_core::unpark_filter(self.key(), filter, |result| {
                self.after_unpark(result, sampled_left.get())
            })
        };
        if !charges.is_empty() {
            charged(&charges);
        }
    }

    /// A hold begins at `at` while sampled waiters are parked: the time since
    /// the last release, when the lock was free, is no holder's doing, so
    /// their records are moved on to `at`. (A hand-off needs no such step:
    /// the lock is never free.)
    #[cold]
    #[inline(never)]
    fn hold_starts(&self, at: u64) {
        if at == 0 {
            return;
        }
        let filter = |token: ParkToken| {
            if token != DEFAULT_PARK_TOKEN {
                // SAFETY: as in `unlock_slow`: the record's waiter is in the
                // queue, which is locked while this runs.
                unsafe { &*(token.0 as *const WaitRecord) }.skip_to(at);
            }
            FilterOp::Skip
        };
        // SAFETY: the key is this lock's address; nothing is unparked, and
        // neither closure panics or calls into `parking_lot_core`.
        unsafe { parking_lot_core::unpark_filter(self.key(), filter, |_| RELEASED) };
    }

    /// The state after an unlock woke `result`'s thread (`sampled_left`: a
    /// waiter with a record may still be parked): now and then
    /// (parking_lot_core's timer) the lock goes straight to the woken thread,
    /// so that a thread re-taking it in a loop cannot starve the queue.
    fn after_unpark(&self, result: UnparkResult, sampled_left: bool) -> UnparkToken {
        let queued = if result.have_more_threads {
            PARKED | if sampled_left { SAMPLED } else { 0 }
        } else {
            0
        };
        if result.unparked_threads != 0 && result.be_fair {
            self.state.store(LOCKED | queued, Relaxed);
            return HANDED_OFF;
        }
        self.state.store(queued, Release);
        RELEASED
    }

    fn key(&self) -> usize {
        self as *const RawMutex as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn uncontended_lock_and_unlock() {
        let m = RawMutex::new();
        assert!(m.try_lock_fast());
        assert!(m.is_locked());
        assert!(!m.try_lock_fast());
        assert!(!m.try_lock());
        assert!(!m.try_lock_for(Duration::from_millis(5)));
        // SAFETY: held.
        unsafe { m.unlock() };
        assert!(!m.is_locked());
        assert!(m.try_lock());
        // SAFETY: held.
        unsafe { m.unlock() };
    }

    /// Many threads incrementing a counter guarded only by the raw lock: any
    /// lost update means two threads held it at once.
    #[test]
    fn excludes_under_contention_with_parking() {
        struct Shared {
            lock: RawMutex,
            count: std::cell::UnsafeCell<u64>,
        }
        // SAFETY: `count` is only touched with `lock` held.
        unsafe impl Sync for Shared {}
        let shared = Arc::new(Shared {
            lock: RawMutex::new(),
            count: 0.into(),
        });
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || {
                    for n in 0..20_000u64 {
                        if (n + i) % 7 == 0 {
                            while !shared.lock.try_lock_for(Duration::from_micros(50)) {}
                        } else {
                            shared.lock.lock();
                        }
                        // SAFETY: the lock is held.
                        unsafe { *shared.count.get() += 1 };
                        if n % 1000 == 0 {
                            std::thread::yield_now();
                        }
                        // SAFETY: held by this thread.
                        unsafe { shared.lock.unlock() };
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // SAFETY: all threads joined.
        assert_eq!(unsafe { *shared.count.get() }, 8 * 20_000);
        assert!(!shared.lock.is_locked());
    }

    #[test]
    fn a_timed_out_waiter_leaves_the_lock_usable() {
        let m = Arc::new(RawMutex::new());
        m.lock();
        let m2 = Arc::clone(&m);
        let waiter = std::thread::spawn(move || m2.try_lock_for(Duration::from_millis(20)));
        assert!(!waiter.join().unwrap());
        // SAFETY: held.
        unsafe { m.unlock() };
        assert!(m.try_lock_fast(), "no parked bit left behind");
        // SAFETY: held.
        unsafe { m.unlock() };
    }
}
