//! A global allocator that takes a profiled lock: the profiler allocates
//! when a lock name is first counted on a thread, and must never do so while
//! the lock being counted is held (that recursed until the stack overflowed),
//! nor record the acquisitions its own allocations cause.

use lockprof::{named, ProfiledMutex, Profiler};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

named!(static ALLOCATOR_LOCK: ProfiledMutex<u64> = ProfiledMutex::new(0));
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static WORKER: Cell<bool> = const { Cell::new(false) };
}

struct LockingAllocator;

// SAFETY: forwards to the system allocator; the lock only counts.
unsafe impl GlobalAlloc for LockingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // Only the test's worker takes the lock: a parking_lot mutex cannot
        // park inside an allocator (its first park on a thread allocates),
        // profiled or not, so the lock must never be contended.
        if WORKER.try_with(Cell::get).unwrap_or(false) {
            if let Ok(mut n) = ALLOCATOR_LOCK.lock() {
                *n += 1;
            }
        }
        ALLOCATIONS.fetch_add(1, Relaxed);
        // SAFETY: the caller's contract is System's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: LockingAllocator = LockingAllocator;

#[test]
fn the_profiler_runs_under_an_allocator_that_takes_a_profiled_lock() {
    static DONE: AtomicBool = AtomicBool::new(false);
    // A hang is the failure this test exists for: say so instead of waiting
    // for the harness.
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(120));
        if !DONE.load(Relaxed) {
            eprintln!("deadlock: the profiler allocated while holding the allocator's lock");
            std::process::abort();
        }
    });
    for pct in [0.0, 1.0, 100.0] {
        let dir = tempfile::tempdir().unwrap();
        let profiler = Profiler::builder()
            .capture_pct(pct)
            .flush_interval(Duration::from_secs(3600))
            .output_pprof(dir.path().join("alloc"))
            .start()
            .expect("start");
        std::thread::scope(|s| {
            for t in 0..1 {
                s.spawn(move || {
                    WORKER.with(|w| w.set(true));
                    let mut v: Vec<Vec<u8>> = Vec::new();
                    for i in 0..40_000 {
                        v.push(vec![t as u8; i % 64 + 1]);
                        if v.len() > 100 {
                            v.clear();
                        }
                    }
                });
            }
        });
        profiler.stop();
        let files = lockprof::read::profile_files(dir.path(), lockprof::read::Pick::All).unwrap_or_default();
        assert_eq!(files.len(), 1, "capture {pct}%: one profile written");
        if pct == 0.0 {
            // Capture 0 records nothing; it still counted every acquisition.
            continue;
        }
        let profile = lockprof::read::LockProfile::from_file(&files[0]).expect("read profile");
        let name = ALLOCATOR_LOCK.site().label();
        let acquired: i64 = profile.samples_of(&name).map(|s| s.acquire).sum();
        // Every allocation of the worker took the lock, and each was counted
        // (the profiler's own allocations on that thread are not).
        assert!(
            acquired >= 40_000,
            "capture {pct}%: {name} acquired {acquired} times in the profile"
        );
    }
    DONE.store(true, Relaxed);
}
