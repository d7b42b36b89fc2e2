// Written against `std::sync::{Mutex, RwLock, Condvar}`. Included twice by
// `swapping_the_import_is_enough.rs`: once with std's `use` line, once with
// lockprof's. Nothing below may change between the two.

use std::sync::Arc;
use std::thread;
use std::time::Duration;

#[test]
fn shared_counter() {
    let counter = Arc::new(Mutex::new(0));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let counter = Arc::clone(&counter);
            thread::spawn(move || {
                for _ in 0..1000 {
                    *counter.lock().unwrap() += 1;
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(*counter.lock().unwrap(), 8000);
    let counter = Arc::try_unwrap(counter).unwrap();
    assert_eq!(counter.into_inner().unwrap(), 8000);
}

#[test]
fn producer_consumer() {
    let queue = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
    let consumer = {
        let queue = Arc::clone(&queue);
        thread::spawn(move || {
            let (items, cv) = &*queue;
            let mut got = Vec::new();
            while got.len() < 100 {
                let mut guard = cv.wait_while(items.lock().unwrap(), |q: &mut Vec<i32>| q.is_empty()).unwrap();
                got.append(&mut guard);
            }
            got
        })
    };
    for i in 0..100 {
        let (items, cv) = &*queue;
        items.lock().unwrap().push(i);
        cv.notify_one();
    }
    let got = consumer.join().unwrap();
    assert_eq!(got, (0..100).collect::<Vec<_>>());
}

#[test]
fn condvar_timeouts() {
    let pair = (Mutex::new(false), Condvar::new());
    let (lock, cv) = &pair;
    let (guard, result) = cv.wait_timeout(lock.lock().unwrap(), Duration::from_millis(20)).unwrap();
    assert!(result.timed_out());
    assert!(!*guard);
    drop(guard);
    let (guard, result) = cv
        .wait_timeout_while(lock.lock().unwrap(), Duration::from_millis(20), |ready| !*ready)
        .unwrap();
    assert!(result.timed_out());
    assert!(!*guard);
}

#[test]
fn poison_recovery() {
    let lock = Arc::new(Mutex::new(vec![1, 2, 3]));
    let l2 = Arc::clone(&lock);
    let r = thread::spawn(move || {
        let _guard = l2.lock().unwrap();
        panic!("poison the lock");
    })
    .join();
    assert!(r.is_err());
    assert!(lock.is_poisoned());
    let guard = match lock.lock() {
        Ok(_) => panic!("lock should be poisoned"),
        Err(poisoned) => poisoned.into_inner(),
    };
    assert_eq!(*guard, vec![1, 2, 3]);
    drop(guard);
    assert!(matches!(lock.try_lock(), Err(std::sync::TryLockError::Poisoned(_))));
    lock.clear_poison();
    assert!(!lock.is_poisoned());
    lock.lock().unwrap().push(4);
    assert_eq!(lock.lock().unwrap().len(), 4);
}

#[test]
fn rwlock_readers_and_writers() {
    let lock = Arc::new(RwLock::new(5));
    {
        let r1 = lock.read().unwrap();
        let r2 = lock.read().unwrap();
        assert_eq!(*r1 + *r2, 10);
        assert!(lock.try_write().is_err());
    }
    *lock.write().unwrap() += 1;
    assert_eq!(*lock.read().unwrap(), 6);

    let l2 = Arc::clone(&lock);
    let _ = thread::spawn(move || {
        let _w = l2.write().unwrap();
        panic!("poison");
    })
    .join();
    assert!(lock.is_poisoned());
    assert!(lock.read().is_err());
    lock.clear_poison();
    assert_eq!(*lock.read().unwrap(), 6);
}

#[test]
fn static_default_from_debug_and_get_mut() {
    static GLOBAL: Mutex<Vec<u8>> = Mutex::new(Vec::new());
    GLOBAL.lock().unwrap().push(1);
    assert_eq!(GLOBAL.lock().unwrap().len(), 1);

    let mut m: Mutex<u32> = Mutex::default();
    *m.get_mut().unwrap() = 3;
    let from: Mutex<u32> = Mutex::from(4);
    assert!(format!("{m:?}").contains('3'));
    assert_eq!(from.into_inner().unwrap(), 4);
    let guard = m.lock().unwrap();
    assert_eq!(format!("{guard:?}"), "3");
    assert_eq!(format!("{guard}"), "3");
    drop(guard);
    let rw: RwLock<String> = RwLock::default();
    rw.write().unwrap().push('x');
    assert_eq!(rw.into_inner().unwrap(), "x");
}

#[test]
fn unsized_data() {
    let slice: &Mutex<[u32]> = &Mutex::new([1, 2, 3]);
    slice.lock().unwrap()[0] = 7;
    assert_eq!(slice.lock().unwrap().iter().sum::<u32>(), 12);
}

#[test]
fn send_and_sync_bounds() {
    fn is_send_sync<T: Send + Sync>() {}
    is_send_sync::<Mutex<Vec<u8>>>();
    is_send_sync::<RwLock<Vec<u8>>>();
    is_send_sync::<Condvar>();
}
