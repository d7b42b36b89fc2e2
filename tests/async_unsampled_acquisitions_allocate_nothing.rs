//! An async acquisition that is not sampled allocates nothing: the sampling
//! decision is a thread-local countdown at the first poll, and the future
//! then only awaits the semaphore. (Its own binary: it installs a counting
//! global allocator.)
#![cfg(feature = "tokio")]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use lockprof::{ProfiledAsyncMutex, ProfiledAsyncRwLock, ProfiledSemaphore};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = COUNTING.try_with(|c| {
            if c.get() {
                let _ = ALLOCATIONS.try_with(|a| a.set(a.get() + 1));
            }
        });
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn ready<F: Future>(future: F, cx: &mut Context<'_>) -> F::Output {
    match pin!(future).poll(cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("an uncontended acquisition must be ready at its first poll"),
    }
}

#[test]
fn unsampled_async_acquisitions_allocate_nothing() {
    struct Noop;
    impl Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }
    let waker = Waker::from(Arc::new(Noop));
    let mut cx = Context::from_waker(&waker);
    let mutex = ProfiledAsyncMutex::new(0u64);
    let rw = ProfiledAsyncRwLock::new(0u64);
    let sem = ProfiledSemaphore::new(1);

    // Running and counting exact totals, but with a sampling probability
    // of 1e-8 (the smallest capture, 0.000001 %): every acquisition takes
    // the unsampled path.
    let profile = common::profile(lockprof::MIN_CAPTURE_PCT, || {
        let mut round = |n: u64| {
            for _ in 0..n {
                *ready(mutex.lock(), &mut cx) += 1;
                *ready(rw.write(), &mut cx) += 1;
                let _ = *ready(rw.read(), &mut cx);
                drop(ready(sem.acquire(), &mut cx).unwrap());
                drop(mutex.try_lock().unwrap());
            }
        };
        // Warm-up: each lock's totals block is allocated on its first
        // counted acquisition.
        round(10);
        COUNTING.with(|c| c.set(true));
        round(10_000);
        COUNTING.with(|c| c.set(false));
    });
    let allocations = ALLOCATIONS.with(|a| a.get());
    assert_eq!(allocations, 0, "allocations in 50,000 unsampled acquisitions");
    assert_eq!(*mutex.try_lock().unwrap(), 10_010);
    // The session was running: the exact totals saw every acquisition.
    assert_eq!(common::totals(&profile, &mutex.site().label()).0, 20_020);
    assert_eq!(common::totals(&profile, &sem.site().label()).0, 10_010);
}
