//! Loom model of a thread's event queue in `src/record/queue.rs`: the
//! single-producer single-consumer ring (`Producer::push`, `Queue::drain`,
//! `Queue`'s `Drop`), and the detection of a gone thread in `Events::poll` in
//! `src/record/recorder.rs` (`Arc::strong_count(&queue) == 1`, then
//! `fence(Acquire)`, a last drain, and the queue forgotten).
//!
//! The crate itself cannot be built under loom, so this is a line-for-line
//! copy of the protocol over loom's atomics, fence, mutex and `UnsafeCell`
//! (whose `with`/`with_mut` let loom catch a race on a slot); keep it in step
//! with `queue.rs` and `Events::poll`. `Padded` is left out (layout only) and
//! `Event` is a numbered stand-in that tallies its drops, so that every test
//! checks each event is dropped exactly once. The queue's `Arc` is a copy of
//! `std::sync::Arc`'s counting (see [`Arc`]): `loom::sync::Arc::strong_count`
//! synchronizes like an acquire load, std's is a relaxed load, and only the
//! latter checks `poll`'s fence. Run as
//! `cd loom-model && RUSTFLAGS="--cfg loom" cargo test --release --test event_queue`
//! (a few seconds).
#![cfg(loom)]

use loom::cell::UnsafeCell;
use loom::sync::atomic::{fence, AtomicUsize, Ordering::*};
use loom::sync::Mutex;
use std::mem::MaybeUninit;
use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::atomic::AtomicU32 as StdAtomicU32;

// ---- `std::sync::Arc`'s strong count, over loom's atomics ----

/// `std::sync::Arc` as far as `poll` relies on it: `clone` is a relaxed
/// increment, `drop` a release decrement with an acquire fence before the
/// last one frees, and `strong_count` a relaxed load (std's own orderings).
/// The loom `Arc` it holds is only a leak detector: loom fails an execution
/// that ends with it alive.
struct Arc<T> {
    inner: NonNull<ArcInner<T>>,
}

struct ArcInner<T> {
    strong: AtomicUsize,
    data: T,
    /// Dropped with `data`, after it; never cloned, so it adds no
    /// synchronization.
    _leak_check: loom::sync::Arc<()>,
}

// SAFETY: as `std::sync::Arc`'s.
unsafe impl<T: Send + Sync> Send for Arc<T> {}
// SAFETY: as `std::sync::Arc`'s.
unsafe impl<T: Send + Sync> Sync for Arc<T> {}

impl<T> Arc<T> {
    fn new(data: T) -> Self {
        let inner = Box::new(ArcInner {
            strong: AtomicUsize::new(1),
            data,
            _leak_check: loom::sync::Arc::new(()),
        });
        Arc {
            inner: NonNull::from(Box::leak(inner)),
        }
    }

    fn inner(&self) -> &ArcInner<T> {
        // SAFETY: this handle holds a strong count.
        unsafe { self.inner.as_ref() }
    }

    fn strong_count(this: &Self) -> usize {
        this.inner().strong.load(Relaxed)
    }
}

impl<T> Clone for Arc<T> {
    fn clone(&self) -> Self {
        self.inner().strong.fetch_add(1, Relaxed);
        Arc { inner: self.inner }
    }
}

impl<T> Deref for Arc<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.inner().data
    }
}

impl<T> Drop for Arc<T> {
    fn drop(&mut self) {
        if self.inner().strong.fetch_sub(1, Release) != 1 {
            return;
        }
        fence(Acquire);
        // SAFETY: that was the last strong count; `inner` came from a `Box`.
        drop(unsafe { Box::from_raw(self.inner.as_ptr()) });
    }
}

// ---- The stand-in for `Event` ----

/// How many times each numbered event was dropped. Plain std atomics: loom
/// runs one thread at a time, and this is bookkeeping, not the protocol.
#[derive(Clone)]
struct Tally(std::sync::Arc<Vec<StdAtomicU32>>);

impl Tally {
    fn new(events: usize) -> Self {
        Tally(std::sync::Arc::new(
            (0..events).map(|_| StdAtomicU32::new(0)).collect(),
        ))
    }

    fn event(&self, n: usize) -> Event {
        Event {
            n,
            tally: self.clone(),
        }
    }

    /// Call once every handle to the queue is gone.
    fn assert_each_dropped_once(&self) {
        for (n, drops) in self.0.iter().enumerate() {
            let drops = drops.load(std::sync::atomic::Ordering::SeqCst);
            assert_eq!(drops, 1, "event {n} dropped {drops} times");
        }
    }
}

struct Event {
    n: usize,
    tally: Tally,
}

impl Drop for Event {
    fn drop(&mut self) {
        let before = self.tally.0[self.n].fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(before, 0, "event {} dropped twice", self.n);
    }
}

// ---- src/record/queue.rs ----

/// The ring. Events in `head..tail` (wrapping counters) are written and not
/// yet taken; the slots outside are free.
struct Queue {
    slots: Box<[UnsafeCell<MaybeUninit<Event>>]>,
    /// Events it holds at most (at most `slots.len()`).
    capacity: usize,
    /// Events pushed so far; stored by the producer only.
    tail: AtomicUsize,
    /// Events taken so far; stored by the consumer only.
    head: AtomicUsize,
    /// Held while draining, so that consumers never overlap.
    consumer: Mutex<()>,
}

// SAFETY: as in queue.rs.
unsafe impl Sync for Queue {}
// SAFETY: as in queue.rs.
unsafe impl Send for Queue {}

impl Queue {
    /// A queue of `capacity` events (at least 1), and its one producer.
    fn new(capacity: usize) -> (Arc<Queue>, Producer) {
        let capacity = capacity.max(1);
        let len = capacity.next_power_of_two();
        let slots = (0..len).map(|_| UnsafeCell::new(MaybeUninit::uninit())).collect();
        let queue = Arc::new(Queue {
            slots,
            capacity,
            tail: AtomicUsize::new(0),
            head: AtomicUsize::new(0),
            consumer: Mutex::new(()),
        });
        let producer = Producer {
            queue: Arc::clone(&queue),
            tail: 0,
            head_seen: 0,
        };
        (queue, producer)
    }

    fn slot(&self, index: usize) -> &UnsafeCell<MaybeUninit<Event>> {
        &self.slots[index & (self.slots.len() - 1)]
    }

    /// Takes every event pushed before this call, in order, and hands each
    /// to `f`; returns how many there were.
    fn drain(&self, mut f: impl FnMut(Event)) -> usize {
        let _consumer = self.consumer.lock().unwrap();
        let tail = self.tail.load(Acquire);
        let mut head = self.head.load(Relaxed);
        let n = tail.wrapping_sub(head);
        while head != tail {
            // SAFETY: as in queue.rs: written before the release store of
            // `tail` acquired above.
            let event = self.slot(head).with(|p| unsafe { (*p).assume_init_read() });
            head = head.wrapping_add(1);
            self.head.store(head, Release);
            f(event);
        }
        n
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        let tail = self.tail.with_mut(|t| *t);
        let mut head = self.head.with_mut(|h| *h);
        while head != tail {
            // SAFETY: as in `drain`; `&mut self` excludes everyone else.
            self.slot(head).with_mut(|p| unsafe { (*p).assume_init_drop() });
            head = head.wrapping_add(1);
        }
    }
}

/// The one handle that pushes to a [`Queue`], kept by its thread.
struct Producer {
    queue: Arc<Queue>,
    /// The queue's `tail`, which only this handle stores.
    tail: usize,
    /// The consumer's `head` as last read.
    head_seen: usize,
}

impl Producer {
    /// Queues `event`, or gives it back when the queue is full.
    fn push(&mut self, event: Event) -> Result<(), Event> {
        let q = &*self.queue;
        if self.tail.wrapping_sub(self.head_seen) >= q.capacity {
            self.head_seen = q.head.load(Acquire);
            if self.tail.wrapping_sub(self.head_seen) >= q.capacity {
                return Err(event);
            }
        }
        // SAFETY: as in queue.rs: the slot is free, handed back by the
        // consumer's release store of `head`.
        q.slot(self.tail).with_mut(|p| unsafe { (*p).write(event) });
        self.tail = self.tail.wrapping_add(1);
        q.tail.store(self.tail, Release);
        Ok(())
    }
}

// ---- Events::poll in src/record/recorder.rs ----

/// The profiler thread's list of queues (the crate's is in `SINK`, taken out
/// for the poll; registration is not modeled) and what it recorded.
struct Events {
    queues: Vec<Arc<Queue>>,
    /// The numbers of the events recorded, in order.
    recorded: Vec<usize>,
}

impl Events {
    fn poll(&mut self) -> usize {
        let queues = std::mem::take(&mut self.queues);
        let mut n = 0;
        let mut live = Vec::with_capacity(queues.len());
        for queue in queues {
            // Only this list holds it: its thread's locals are gone, and no
            // event can be queued to it any more.
            let gone = Arc::strong_count(&queue) == 1;
            if gone {
                // Pairs with the thread's release of its reference.
                fence(Acquire);
            }
            n += queue.drain(|event| self.recorded.push(event.n));
            if !gone {
                live.push(queue);
            }
        }
        self.queues.append(&mut live);
        n
    }
}

// ---- The models ----

/// Pushes events `0..count` without retrying; returns the numbers accepted.
/// A refused event must come back whole, and is dropped here.
fn push_all(producer: &mut Producer, tally: &Tally, count: usize) -> Vec<usize> {
    let mut accepted = Vec::new();
    for n in 0..count {
        match producer.push(tally.event(n)) {
            Ok(()) => accepted.push(n),
            Err(back) => assert_eq!(back.n, n, "a refused event came back changed"),
        }
    }
    accepted
}

/// A thread pushing three events to a queue of two while the profiler
/// drains it: every accepted event is drained once, in order; refused ones
/// come back to the thread; nothing is lost.
#[test]
fn accepted_events_are_drained_once_in_order_and_refused_ones_come_back() {
    loom::model(|| {
        let tally = Tally::new(3);
        let (queue, mut producer) = Queue::new(2);
        let thread = {
            let tally = tally.clone();
            loom::thread::spawn(move || push_all(&mut producer, &tally, 3))
        };
        let mut recorded = Vec::new();
        for _ in 0..2 {
            queue.drain(|e| recorded.push(e.n));
        }
        let accepted = thread.join().unwrap();
        queue.drain(|e| recorded.push(e.n));
        assert_eq!(recorded, accepted);
        // At least the first two fit.
        assert!(accepted.starts_with(&[0, 1]), "{accepted:?}");
        drop(queue);
        tally.assert_each_dropped_once();
    });
}

/// More pushes than slots, retried until accepted, while the profiler drains
/// until it has them all: each slot is rewritten after the profiler read it,
/// and loom checks those accesses do not race.
fn wrap_around(capacity: usize, count: usize) {
    loom::model(move || {
        let tally = Tally::new(count);
        let (queue, mut producer) = Queue::new(capacity);
        let thread = {
            let tally = tally.clone();
            loom::thread::spawn(move || {
                for n in 0..count {
                    let mut event = tally.event(n);
                    while let Err(back) = producer.push(event) {
                        event = back;
                        loom::thread::yield_now();
                    }
                }
            })
        };
        let mut recorded = Vec::new();
        while recorded.len() < count {
            if queue.drain(|e| recorded.push(e.n)) == 0 {
                loom::thread::yield_now();
            }
        }
        assert_eq!(recorded, (0..count).collect::<Vec<_>>());
        thread.join().unwrap();
        drop(queue);
        tally.assert_each_dropped_once();
    });
}

#[test]
fn a_one_slot_ring_reused_while_drained_does_not_race() {
    wrap_around(1, 3);
}

#[test]
fn a_two_slot_ring_wrapping_while_drained_does_not_race() {
    wrap_around(2, 3);
}

/// A thread that pushes and exits while the profiler polls: once `poll` has
/// forgotten its queue, every event the thread queued was recorded (checked
/// before joining the thread, which would synchronize), and each event is
/// dropped once.
fn thread_exit(capacity: usize, count: usize) {
    loom::model(move || {
        let tally = Tally::new(count);
        let (queue, mut producer) = Queue::new(capacity);
        let thread = {
            let tally = tally.clone();
            loom::thread::spawn(move || {
                let accepted = push_all(&mut producer, &tally, count);
                // The thread's locals are torn down.
                drop(producer);
                accepted
            })
        };
        let mut events = Events {
            queues: vec![queue],
            recorded: Vec::new(),
        };
        while !events.queues.is_empty() {
            if events.poll() == 0 {
                loom::thread::yield_now();
            }
        }
        // Forgotten: whatever is recorded now is all it will ever get.
        let recorded = std::mem::take(&mut events.recorded);
        let accepted = thread.join().unwrap();
        assert_eq!(recorded, accepted, "events stranded in a forgotten queue");
        tally.assert_each_dropped_once();
    });
}

#[test]
fn a_gone_threads_queue_is_forgotten_only_once_drained() {
    thread_exit(2, 3);
}

#[test]
fn a_gone_threads_one_slot_queue_is_forgotten_only_once_drained() {
    thread_exit(1, 2);
}

/// The session closed while a thread still pushes (`Events::close` drains,
/// then dropping the sink drops its handles): the thread's handle frees the
/// queue, and with it the events left in the ring, each exactly once.
#[test]
fn events_left_when_the_thread_frees_the_queue_are_dropped_once() {
    loom::model(|| {
        let tally = Tally::new(3);
        let (queue, mut producer) = Queue::new(2);
        let thread = {
            let tally = tally.clone();
            loom::thread::spawn(move || {
                let accepted = push_all(&mut producer, &tally, 3);
                drop(producer);
                accepted
            })
        };
        let mut recorded = Vec::new();
        queue.drain(|e| recorded.push(e.n));
        drop(queue);
        let accepted = thread.join().unwrap();
        assert!(accepted.starts_with(&recorded), "{recorded:?} of {accepted:?}");
        tally.assert_each_dropped_once();
    });
}

/// Two consumers draining at once (the lock in `drain`), while a thread
/// pushes: each event is taken by exactly one of them.
#[test]
fn overlapping_drains_take_each_event_once() {
    loom::model(|| {
        let tally = Tally::new(2);
        let (queue, mut producer) = Queue::new(2);
        let thread = {
            let tally = tally.clone();
            loom::thread::spawn(move || push_all(&mut producer, &tally, 2))
        };
        let other = {
            let queue = Arc::clone(&queue);
            loom::thread::spawn(move || {
                let mut recorded = Vec::new();
                queue.drain(|e| recorded.push(e.n));
                recorded
            })
        };
        let mut recorded = Vec::new();
        queue.drain(|e| recorded.push(e.n));
        let mut all = other.join().unwrap();
        assert_eq!(thread.join().unwrap(), [0, 1]);
        queue.drain(|e| recorded.push(e.n));
        all.append(&mut recorded);
        all.sort_unstable();
        assert_eq!(all, [0, 1]);
        drop(queue);
        tally.assert_each_dropped_once();
    });
}
