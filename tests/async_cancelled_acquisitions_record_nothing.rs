//! A lock future dropped before it acquired (after its first poll, so after
//! it was decided and sampled) records nothing: no count, no wait, no stack.
#![cfg(feature = "tokio")]

mod common;

use common::{profile, totals};
use lockprof::read::labels;
use lockprof::{named, ProfiledAsyncMutex, ProfiledAsyncRwLock, ProfiledSemaphore};
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

/// Polls `future` once, without a runtime.
fn poll_once<F: Future>(future: Pin<&mut F>) -> Poll<F::Output> {
    struct Noop;
    impl Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }
    let waker = Waker::from(Arc::new(Noop));
    future.poll(&mut Context::from_waker(&waker))
}

#[test]
fn dropped_and_timed_out_lock_futures_record_nothing() {
    named!(let contested = Arc::new(ProfiledAsyncMutex::new(())));
    named!(let rw = ProfiledAsyncRwLock::new(()));
    named!(let closed = ProfiledSemaphore::new(0));
    let c = Arc::clone(&contested);
    let profile = profile(100.0, || {
        let guard = c.try_lock().unwrap();
        {
            let mut waiting = pin!(c.lock());
            assert!(poll_once(waiting.as_mut()).is_pending());
            let mut owned = pin!(Arc::clone(&c).lock_owned());
            assert!(poll_once(owned.as_mut()).is_pending());
        }
        assert!(c.try_lock().is_err());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let r = tokio::time::timeout(Duration::from_millis(10), c.lock()).await;
            assert!(r.is_err());
        });
        drop(guard);

        let writer = rw.try_write().unwrap();
        {
            let mut reading = pin!(rw.read());
            assert!(poll_once(reading.as_mut()).is_pending());
        }
        drop(writer);

        // A semaphore closed while a task waits: the acquisition fails.
        let mut acquiring = pin!(closed.acquire());
        assert!(poll_once(acquiring.as_mut()).is_pending());
        closed.close();
        assert!(matches!(poll_once(acquiring.as_mut()), Poll::Ready(Err(_))));
        assert!(closed.try_acquire().is_err());
    });
    // Only the try_lock that held the lock throughout.
    let (acquired, waited, released, _) = totals(&profile, &contested.site().label());
    assert_eq!((acquired, waited, released), (1, 0, 1));
    let rw_name = rw.site().label();
    assert_eq!(totals(&profile, &rw_name).0, 1);
    assert!(profile
        .samples_of(&rw_name)
        .all(|s| s.label_str(labels::LOCK_MODE) == Some("write")));
    assert_eq!(profile.samples_of(&closed.site().label()).count(), 0);
}
