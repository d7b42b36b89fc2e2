//! Loom model of the per-thread count tables in `src/record/stats.rs`: a
//! thread's plain load-and-store counts, the table growing (copied, then
//! swapped in), the thread's exit flag, and `take_deltas`' reads.
//!
//! The crate itself cannot be built under loom (its lock constructors are
//! `const fn`, loom's atomics are not), so this is a copy of the protocol
//! over loom's atomics; keep it in step with `stats.rs`. Run by
//! `./scripts/test.sh` as
//! `cd loom-model && RUSTFLAGS="--cfg loom" cargo test --release`.
#![cfg(loom)]

use loom::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering::*};
use loom::sync::{Arc, Mutex};

struct Table {
    slots: Vec<AtomicU64>,
}

struct ThreadCounts {
    current: AtomicPtr<Table>,
    /// Replaced tables, kept while the profiler may read them.
    old: Mutex<Vec<*mut Table>>,
    exited: AtomicBool,
    /// The profiler's: what it reported per slot.
    reported: Mutex<Vec<u64>>,
}

// SAFETY (model): the raw pointers are owned boxes freed in `Drop`.
unsafe impl Send for ThreadCounts {}
unsafe impl Sync for ThreadCounts {}

impl ThreadCounts {
    fn new(len: usize) -> Self {
        let t = Box::into_raw(Box::new(Table { slots: (0..len).map(|_| AtomicU64::new(0)).collect() }));
        ThreadCounts {
            current: AtomicPtr::new(t),
            old: Mutex::new(Vec::new()),
            exited: AtomicBool::new(false),
            reported: Mutex::new(Vec::new()),
        }
    }

    fn table(&self) -> &Table {
        // SAFETY (model): always a live table, as in stats.rs.
        unsafe { &*self.current.load(Acquire) }
    }

    /// The owning thread's count: a plain load and store.
    fn count(&self, slot: usize) {
        let c = &self.table().slots[slot];
        c.store(c.load(Relaxed) + 1, Relaxed);
    }

    /// The owning thread's growth: copy, then swap in.
    fn grow(&self, len: usize) {
        let old = self.table();
        let slots = (0..len)
            .map(|i| AtomicU64::new(old.slots.get(i).map_or(0, |c| c.load(Relaxed))))
            .collect();
        let fresh = Box::into_raw(Box::new(Table { slots }));
        let replaced = self.current.swap(fresh, AcqRel);
        self.old.lock().unwrap().push(replaced);
    }
}

impl Drop for ThreadCounts {
    fn drop(&mut self) {
        // SAFETY (model): owned boxes.
        unsafe {
            drop(Box::from_raw(self.current.load(Relaxed)));
            for t in self.old.get_mut().unwrap().drain(..) {
                drop(Box::from_raw(t));
            }
        }
    }
}

/// What changed since the last call; forgets exited threads after their last
/// read. Returns the sum and whether the thread was forgotten.
fn take_deltas(list: &Mutex<Vec<Arc<ThreadCounts>>>) -> u64 {
    let snapshot: Vec<Arc<ThreadCounts>> = list.lock().unwrap().clone();
    let mut total = 0;
    let mut gone = Vec::new();
    for t in &snapshot {
        let exited = t.exited.load(Acquire);
        let table = t.table();
        let mut reported = t.reported.lock().unwrap();
        if reported.len() < table.slots.len() {
            reported.resize(table.slots.len(), 0);
        }
        for (i, c) in table.slots.iter().enumerate() {
            let now = c.load(Relaxed);
            total += now - std::mem::replace(&mut reported[i], now);
        }
        if exited {
            gone.push(Arc::as_ptr(t));
        }
    }
    drop(snapshot);
    list.lock().unwrap().retain(|t| !gone.contains(&Arc::as_ptr(t)));
    total
}

/// A thread counts, grows its table, counts again and exits while the
/// profiler reads: every count is reported exactly once, and the exited
/// thread's table is forgotten after its last read.
#[test]
fn counts_are_reported_once_across_growth_and_exit() {
    loom::model(|| {
        let list = Arc::new(Mutex::new(Vec::new()));
        let counts = Arc::new(ThreadCounts::new(1));
        list.lock().unwrap().push(Arc::clone(&counts));
        let user = loom::thread::spawn(move || {
            counts.count(0);
            counts.grow(2);
            counts.count(0);
            counts.count(1);
            counts.exited.store(true, Release);
        });
        let mut reported = take_deltas(&list);
        reported += take_deltas(&list);
        user.join().unwrap();
        reported += take_deltas(&list);
        assert_eq!(reported, 3);
        assert!(list.lock().unwrap().is_empty(), "an exited thread's table was kept");
    });
}
