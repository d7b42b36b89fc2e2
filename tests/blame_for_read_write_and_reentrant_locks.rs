//! "Who made me wait" for the locks whose raw lock is parking_lot's: a
//! writer waiting behind readers is charged to the readers that held it,
//! readers queued behind a waiting writer are charged to that writer's hold,
//! and a re-entrant mutex charges its holder as a mutex does. The truth is
//! timed by the test itself, at capture 100 %.

mod common;

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::{caused_by, profile};
use lockprof::read::Blame;
use lockprof::{named, ProfiledMutex, ProfiledReentrantMutex, ProfiledRwLock};

fn total_caused(blame: &[Blame], lock: &str) -> f64 {
    blame
        .iter()
        .filter(|b| b.lock_name == lock)
        .map(|b| b.caused_wait_ns as f64)
        .sum()
}

/// The overlap of `wait` with `hold`, in nanoseconds.
fn overlap(wait: (Instant, Instant), hold: (Instant, Instant)) -> f64 {
    let from = wait.0.max(hold.0);
    let to = wait.1.min(hold.1);
    to.saturating_duration_since(from).as_nanos() as f64
}

/// Takes a read lock, lets the caller know once it is held, holds it for
/// `hold`; returns when it was acquired and released.
fn read_and_hold(lock: &ProfiledRwLock<u64>, held: &Barrier, hold: Duration) -> (Instant, Instant) {
    let guard = lock.read().unwrap();
    let acquired = Instant::now();
    held.wait();
    thread::sleep(hold);
    black_box(*guard);
    let released = Instant::now();
    drop(guard);
    (acquired, released)
}

#[inline(never)]
fn slow_reader(lock: &ProfiledRwLock<u64>, held: &Barrier, hold: Duration) -> (Instant, Instant) {
    black_box(read_and_hold(lock, held, hold))
}

#[inline(never)]
fn eager_writer(lock: &ProfiledRwLock<u64>) {
    *lock.write().unwrap() += 1;
    black_box(());
}

#[test]
fn a_writer_waiting_behind_readers_is_charged_to_the_readers() {
    const READERS: usize = 2;
    const ROUNDS: usize = 4;
    let hold = Duration::from_millis(50);
    named!(let shared = Arc::new(ProfiledRwLock::new(0u64)));
    let name = shared.site().label();
    let mut truth = 0.0;
    let profile = profile(100.0, || {
        for _ in 0..ROUNDS {
            // Both readers hold before the writer starts to wait.
            let held = Arc::new(Barrier::new(READERS + 1));
            let readers: Vec<_> = (0..READERS)
                .map(|_| {
                    let (lock, held) = (Arc::clone(&shared), Arc::clone(&held));
                    thread::spawn(move || slow_reader(&lock, &held, hold))
                })
                .collect();
            held.wait();
            let began = Instant::now();
            eager_writer(&shared);
            let wait = (began, Instant::now());
            let holds: Vec<_> = readers.into_iter().map(|r| r.join().unwrap()).collect();
            // The writer waited until the last reader left.
            let last = holds.iter().map(|h| h.1).max().unwrap();
            truth += overlap(wait, (began, last));
        }
    });
    let blame = profile.blame();
    let readers = caused_by(&blame, &name, "slow_reader");
    let writer = caused_by(&blame, &name, "eager_writer");
    assert!(
        truth > 0.9 * ROUNDS as f64 * hold.as_nanos() as f64,
        "truth {truth}"
    );
    assert!(
        (readers - truth).abs() <= 0.05 * truth,
        "slow_reader charged {readers} ns, the writer's waits behind the readers {truth} ns"
    );
    assert!(
        writer <= 0.02 * truth,
        "eager_writer charged {writer} ns of {truth}"
    );
    // The pair: eager_writer waited on slow_reader.
    let top = blame
        .iter()
        .filter(|b| b.lock_name == name)
        .find(|b| b.holder.iter().any(|f| f.function.contains("slow_reader")))
        .expect("slow_reader is a holder");
    assert!(
        top.waiters
            .first()
            .is_some_and(|w| w.frames.iter().any(|f| f.function.contains("eager_writer"))),
        "top waiter of slow_reader: {:?}",
        top.waiters
            .first()
            .map(|w| w.frames.iter().map(|f| &f.function).collect::<Vec<_>>())
    );
}

#[inline(never)]
fn first_reader(lock: &ProfiledRwLock<u64>, held: &Barrier, hold: Duration) -> (Instant, Instant) {
    black_box(read_and_hold(lock, held, hold))
}

#[inline(never)]
fn slow_writer(lock: &ProfiledRwLock<u64>, hold: Duration) -> (Instant, Instant) {
    let mut guard = lock.write().unwrap();
    let acquired = Instant::now();
    thread::sleep(hold);
    *guard += 1;
    let released = Instant::now();
    drop(guard);
    (acquired, released)
}

#[inline(never)]
fn late_reader(lock: &ProfiledRwLock<u64>) {
    black_box(*lock.read().unwrap());
}

/// A reader holds; a writer queues behind it; then more readers come, and
/// queue behind the waiting writer (parking_lot's read-write lock lets no
/// reader pass a waiting writer). The late readers' waits are charged to
/// the first reader until the writer gets the lock, and then to the
/// writer's hold: "one pending writer holds up all future readers".
#[test]
fn readers_queued_behind_a_waiting_writer_are_charged_to_its_hold() {
    const LATE: usize = 3;
    const ROUNDS: usize = 3;
    let (first_hold, write_hold) = (Duration::from_millis(40), Duration::from_millis(50));
    named!(let shared = Arc::new(ProfiledRwLock::new(0u64)));
    let name = shared.site().label();
    let (mut truth_writer, mut truth_first) = (0.0, 0.0);
    let profile = profile(100.0, || {
        for _ in 0..ROUNDS {
            let held = Arc::new(Barrier::new(2));
            let first = {
                let (lock, held) = (Arc::clone(&shared), Arc::clone(&held));
                thread::spawn(move || first_reader(&lock, &held, first_hold))
            };
            held.wait();
            let writer = {
                let lock = Arc::clone(&shared);
                thread::spawn(move || slow_writer(&lock, write_hold))
            };
            // Let the writer queue before the late readers come.
            thread::sleep(Duration::from_millis(10));
            let late: Vec<_> = (0..LATE)
                .map(|_| {
                    let lock = Arc::clone(&shared);
                    thread::spawn(move || {
                        let began = Instant::now();
                        late_reader(&lock);
                        (began, Instant::now())
                    })
                })
                .collect();
            let first = first.join().unwrap();
            let writer = writer.join().unwrap();
            for wait in late.into_iter().map(|t| t.join().unwrap()) {
                truth_writer += overlap(wait, writer);
                truth_first += overlap(wait, first);
            }
        }
    });
    let blame = profile.blame();
    let by_writer = caused_by(&blame, &name, "slow_writer");
    let by_first = caused_by(&blame, &name, "first_reader");
    let by_late = caused_by(&blame, &name, "late_reader");
    let expected = (LATE * ROUNDS) as f64 * write_hold.as_nanos() as f64;
    assert!(truth_writer > 0.9 * expected, "truth {truth_writer}");
    assert!(
        (by_writer - truth_writer).abs() <= 0.05 * truth_writer,
        "slow_writer charged {by_writer} ns, the late readers' waits inside its holds {truth_writer} ns"
    );
    // The first reader is charged the late readers' waits inside its hold
    // and the writer's wait (about the first hold, less 10 ms, for each).
    assert!(
        by_first >= 0.9 * truth_first,
        "first_reader charged {by_first} ns, at least {truth_first}"
    );
    assert!(by_late <= 0.02 * truth_writer, "late_reader charged {by_late} ns");
    // Nothing charged twice: the total is at most the waits' total.
    let total = total_caused(&blame, &name);
    assert!(total <= by_writer + by_first + by_late + 1e6, "total {total}");
}

/// `waiters` threads wait in `wait` while the main thread holds in `hold`
/// (which returns when it acquired and released), `rounds` times, at
/// capture 100 %: `hold_name`'s stack must be charged the waits inside the
/// holds within 5 %, `wait_name`'s under 2 % of them.
fn one_holder_many_waiters<L: Send + Sync + 'static>(
    lock: L,
    hold: fn(&L, &Barrier) -> (Instant, Instant),
    wait: fn(&L),
    (hold_name, wait_name): (&str, &str),
    name: String,
) {
    const WAITERS: usize = 3;
    const ROUNDS: usize = 3;
    let shared = Arc::new(lock);
    let mut truth = 0.0;
    let profile = profile(100.0, || {
        for _ in 0..ROUNDS {
            let held = Arc::new(Barrier::new(WAITERS + 1));
            let waiters: Vec<_> = (0..WAITERS)
                .map(|_| {
                    let (lock, held) = (Arc::clone(&shared), Arc::clone(&held));
                    thread::spawn(move || {
                        held.wait();
                        let began = Instant::now();
                        wait(&lock);
                        (began, Instant::now())
                    })
                })
                .collect();
            let hold_span = hold(&shared, &held);
            for waited in waiters.into_iter().map(|t| t.join().unwrap()) {
                truth += overlap(waited, hold_span);
            }
        }
    });
    let blame = profile.blame();
    assert!(
        truth > 0.9 * (WAITERS * ROUNDS) as f64 * HOLD.as_nanos() as f64,
        "truth {truth}"
    );
    let (held, waited) = (
        caused_by(&blame, &name, hold_name),
        caused_by(&blame, &name, wait_name),
    );
    assert!(
        (held - truth).abs() <= 0.05 * truth,
        "{hold_name} charged {held} ns, waits inside its holds {truth} ns"
    );
    assert!(
        waited <= 0.02 * truth,
        "{wait_name} charged {waited} ns of {truth}"
    );
}

const HOLD: Duration = Duration::from_millis(50);

#[inline(never)]
fn slow_section(lock: &ProfiledReentrantMutex<u64>, held: &Barrier) -> (Instant, Instant) {
    let outer = lock.lock();
    let acquired = Instant::now();
    held.wait();
    // Re-entered while held: still one hold.
    let inner = lock.lock();
    thread::sleep(HOLD);
    black_box(*inner);
    drop(inner);
    let released = Instant::now();
    drop(outer);
    (acquired, released)
}

#[inline(never)]
fn quick_section(lock: &ProfiledReentrantMutex<u64>) {
    black_box(*lock.lock());
}

#[test]
fn a_reentrant_mutex_charges_its_holder() {
    named!(let lock = ProfiledReentrantMutex::new(0u64));
    let name = lock.site().label();
    one_holder_many_waiters(
        lock,
        slow_section,
        quick_section,
        ("slow_section", "quick_section"),
        name,
    );
}

#[inline(never)]
fn holds_long(lock: &ProfiledMutex<u64>, held: &Barrier) -> (Instant, Instant) {
    let mut guard = lock.lock().unwrap();
    let acquired = Instant::now();
    held.wait();
    thread::sleep(HOLD);
    *guard += 1;
    let released = Instant::now();
    drop(guard);
    (acquired, released)
}

#[inline(never)]
fn patient_waiter(lock: &ProfiledMutex<u64>) {
    let guard = lock
        .try_lock_for(Duration::from_secs(10))
        .expect("acquired within 10 s");
    black_box(*guard);
}

/// `try_lock_for` waits are charged as `lock` waits are (the stress suite's
/// scenarios take their locks with a timeout).
#[test]
fn waits_with_a_timeout_are_charged_too() {
    named!(let lock = ProfiledMutex::new(0u64));
    let name = lock.site().label();
    one_holder_many_waiters(
        lock,
        holds_long,
        patient_waiter,
        ("holds_long", "patient_waiter"),
        name,
    );
}
