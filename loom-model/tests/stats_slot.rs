//! Loom model of the per-lock stats publication protocol in
//! `src/record/stats.rs`: `StatsSlot::register`'s CAS, `count`'s plain
//! load-and-store under the user's lock, `take_deltas` and `Drop`.
//!
//! The crate itself cannot be built under loom (its lock constructors are
//! `const fn`, loom's atomics are not), so this is a line-for-line copy of the
//! protocol over loom's `Arc`, atomics and mutex; keep it in step with
//! `stats.rs`. Run by `./scripts/test.sh` as
//! `cd loom-model && RUSTFLAGS="--cfg loom" cargo test --release`.
#![cfg(loom)]

use loom::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering::*};
use loom::sync::{Arc, Mutex};
use std::ptr;

#[derive(Default)]
struct LockStats {
    acquired: AtomicU64,
    /// Set by the slot's `Drop` (Release); read by `take_deltas` (Acquire)
    /// before the counters, so a retired block is read complete.
    retired: AtomicBool,
    reported: AtomicU64,
}

#[derive(Default)]
struct Registry(Mutex<Vec<Arc<LockStats>>>);

struct StatsSlot {
    ptr: AtomicPtr<LockStats>,
    /// The crate's is a static.
    registry: Arc<Registry>,
}

impl StatsSlot {
    fn new(registry: Arc<Registry>) -> Self {
        StatsSlot {
            ptr: AtomicPtr::new(ptr::null_mut()),
            registry,
        }
    }

    /// Call with the user's lock held exclusively.
    fn count(&self) {
        let c = &self.get().acquired;
        c.store(c.load(Relaxed).wrapping_add(1), Relaxed);
    }

    fn get(&self) -> &LockStats {
        let p = self.ptr.load(Acquire);
        if p.is_null() {
            return self.register();
        }
        // SAFETY: as in stats.rs: published by `register`, freed only by `drop`.
        unsafe { &*p }
    }

    fn register(&self) -> &LockStats {
        let stats = Arc::new(LockStats::default());
        let raw = Arc::into_raw(Arc::clone(&stats)) as *mut LockStats;
        match self.ptr.compare_exchange(ptr::null_mut(), raw, AcqRel, Acquire) {
            Ok(_) => {
                self.registry.0.lock().unwrap().push(stats);
                // SAFETY: just published; valid until `drop`.
                unsafe { &*raw }
            }
            Err(existing) => {
                // SAFETY: `raw` came from `Arc::into_raw` and was not published.
                drop(unsafe { Arc::from_raw(raw) });
                // SAFETY: published by the winner; valid until `drop`.
                unsafe { &*existing }
            }
        }
    }
}

impl Drop for StatsSlot {
    fn drop(&mut self) {
        let p = self.ptr.load(Acquire);
        if !p.is_null() {
            // SAFETY: the slot owns the strong count taken in `register`.
            let stats = unsafe { Arc::from_raw(p) };
            stats.retired.store(true, Release);
        }
    }
}

/// What changed since the last call, summed over every block; forgets retired
/// blocks after their last read.
fn take_deltas(registry: &Registry) -> u64 {
    let mut total = 0;
    registry.0.lock().unwrap().retain(|stats| {
        let retired = stats.retired.load(Acquire);
        let now = stats.acquired.load(Relaxed);
        total += now.wrapping_sub(stats.reported.swap(now, Relaxed));
        !retired
    });
    total
}

/// A lock counted twice and dropped while the recorder reads its totals:
/// every acquisition is reported exactly once, and nothing leaks.
#[test]
fn a_lock_dropped_during_a_flush_loses_no_count() {
    loom::model(|| {
        let registry = Arc::new(Registry::default());
        let user = {
            let registry = Arc::clone(&registry);
            loom::thread::spawn(move || {
                let lock = Mutex::new(());
                let slot = StatsSlot::new(registry);
                for _ in 0..2 {
                    let _held = lock.lock().unwrap();
                    slot.count();
                }
                drop(slot);
            })
        };
        let mut reported = take_deltas(&registry);
        reported += take_deltas(&registry);
        user.join().unwrap();
        reported += take_deltas(&registry);
        assert_eq!(reported, 2);
        assert!(registry.0.lock().unwrap().is_empty(), "a retired block was kept");
    });
}

/// Two threads registering the same slot at once (shared modes count their
/// waits concurrently): one block wins, both use it, the loser's is freed.
#[test]
fn concurrent_registration_publishes_one_block() {
    loom::model(|| {
        let registry = Arc::new(Registry::default());
        let slot = Arc::new(StatsSlot::new(Arc::clone(&registry)));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let slot = Arc::clone(&slot);
                loom::thread::spawn(move || slot.get() as *const LockStats as usize)
            })
            .collect();
        let seen: Vec<usize> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(seen[0], seen[1], "both threads must use the published block");
        assert_eq!(registry.0.lock().unwrap().len(), 1);
        drop(slot);
        assert_eq!(take_deltas(&registry), 0);
        assert!(registry.0.lock().unwrap().is_empty());
    });
}
