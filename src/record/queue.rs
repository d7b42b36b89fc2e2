//! A thread's queue of sampled events: a bounded ring with one producer (the
//! thread) and one consumer (the profiler thread).
//!
//! Pushing is a slot write and a plain release store of the tail: no locked
//! instruction, so the store of an event whose cache line the profiler
//! thread's core still holds retires in the background instead of stalling
//! the locking thread. (A mutex-guarded vector measured about 100 ns more
//! per sampled lock+unlock at 100% capture, its unlocks waiting on those
//! lines.)
//!
//! `loom-model/tests/event_queue.rs` checks this protocol, and the forgetting
//! of an exited thread's queue in `Events::poll`, under loom: keep it in step.

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicUsize, Ordering::*};
use std::sync::Arc;

use parking_lot::Mutex;

use super::Event;

/// Keeps the producer's and the consumer's counters on separate cache lines.
#[repr(align(128))]
struct Padded<T>(T);

/// The ring. Events in `head..tail` (wrapping counters) are written and not
/// yet taken; the slots outside are free.
pub(crate) struct Queue {
    slots: Box<[UnsafeCell<MaybeUninit<Event>>]>,
    /// Events it holds at most (at most `slots.len()`).
    capacity: usize,
    /// Events pushed so far; stored by the producer only.
    tail: Padded<AtomicUsize>,
    /// Events taken so far; stored by the consumer only.
    head: Padded<AtomicUsize>,
    /// Held while draining, so that consumers never overlap.
    consumer: Mutex<()>,
}

// SAFETY: a slot is accessed by the producer only while it is free and by the
// consumer only while it is full; `tail` (Release/Acquire) hands a written
// slot to the consumer and `head` (Release/Acquire) hands a taken one back.
// `Producer` is unique, and `consumer` serializes the consumers. Events are
// `Send`.
unsafe impl Sync for Queue {}
// SAFETY: as above; the slots own `Event`s, which are `Send`.
unsafe impl Send for Queue {}

impl Queue {
    /// A queue of `capacity` events (at least 1), and its one producer.
    pub(crate) fn new(capacity: usize) -> (Arc<Queue>, Producer) {
        let capacity = capacity.max(1);
        let len = capacity.next_power_of_two();
        let slots = (0..len).map(|_| UnsafeCell::new(MaybeUninit::uninit())).collect();
        let queue = Arc::new(Queue {
            slots,
            capacity,
            tail: Padded(AtomicUsize::new(0)),
            head: Padded(AtomicUsize::new(0)),
            consumer: Mutex::new(()),
        });
        let producer = Producer {
            queue: Arc::clone(&queue),
            tail: 0,
            head_seen: 0,
        };
        (queue, producer)
    }

    /// Gives a queue that nothing else holds any more (its thread is gone)
    /// to a new producer: its memory is already touched, where a new ring's
    /// first writes fault its pages in, inside the critical section of a
    /// sampled acquisition. Gives it back if anything else still holds it.
    pub(crate) fn reuse(mut queue: Arc<Queue>) -> Result<(Arc<Queue>, Producer), Arc<Queue>> {
        let Some(q) = Arc::get_mut(&mut queue) else {
            return Err(queue);
        };
        q.clear();
        let producer = Producer {
            queue: Arc::clone(&queue),
            tail: 0,
            head_seen: 0,
        };
        Ok((queue, producer))
    }

    /// Drops what is left and starts the counters again.
    fn clear(&mut self) {
        let tail = *self.tail.0.get_mut();
        let mut head = *self.head.0.get_mut();
        while head != tail {
            // SAFETY: as in `drain`; `&mut self` excludes everyone else.
            unsafe { (*self.slot(head)).assume_init_drop() };
            head = head.wrapping_add(1);
        }
        *self.tail.0.get_mut() = 0;
        *self.head.0.get_mut() = 0;
    }

    fn slot(&self, index: usize) -> *mut MaybeUninit<Event> {
        self.slots[index & (self.slots.len() - 1)].get()
    }

    /// Takes every event pushed before this call, in order, and hands each
    /// to `f`; returns how many there were.
    pub(crate) fn drain(&self, mut f: impl FnMut(Event)) -> usize {
        let _consumer = self.consumer.lock();
        let tail = self.tail.0.load(Acquire);
        let mut head = self.head.0.load(Relaxed);
        let n = tail.wrapping_sub(head);
        while head != tail {
            // SAFETY: `head != tail`, so the producer wrote this slot before
            // its release store of `tail`, which the load above acquired; it
            // does not touch the slot again until `head` passes it below.
            // `consumer` is held, so no one else reads it.
            let event = unsafe { (*self.slot(head)).assume_init_read() };
            head = head.wrapping_add(1);
            // Before `f`: a panic there must not leave the slot to be read
            // a second time.
            self.head.0.store(head, Release);
            f(event);
        }
        n
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        self.clear();
    }
}

/// The one handle that pushes to a [`Queue`], kept by its thread.
pub(crate) struct Producer {
    queue: Arc<Queue>,
    /// The queue's `tail`, which only this handle stores.
    tail: usize,
    /// The consumer's `head` as last read: reread only when the ring looks
    /// full, so that pushing does not fetch the consumer's cache line.
    head_seen: usize,
}

impl Producer {
    /// Queues `event`, or gives it back when the queue is full.
    #[inline(always)]
    pub(crate) fn push(&mut self, event: Event) -> Result<(), Event> {
        let q = &*self.queue;
        if self.tail.wrapping_sub(self.head_seen) >= q.capacity {
            self.head_seen = q.head.0.load(Acquire);
            if self.tail.wrapping_sub(self.head_seen) >= q.capacity {
                return Err(event);
            }
        }
        // SAFETY: fewer than `capacity` events are pending, so this slot is
        // free: the consumer took its last event before its release store of
        // `head` (acquired above, or earlier), and reads it again only after
        // the store of `tail` below. `&mut self` on the unique producer
        // excludes other writers.
        unsafe { (*q.slot(self.tail)).write(event) };
        self.tail = self.tail.wrapping_add(1);
        q.tail.0.store(self.tail, Release);
        prefetch_for_write(q.slot(self.tail));
        Ok(())
    }
}

/// Asks for the cache line at `p` in a state this core may write, ahead of
/// the write: the next event's slot was last read by the profiler thread's
/// core, and fetching it at the write itself left the store waiting in the
/// store buffer, where the next locked instruction (the user's next lock)
/// waited on it. A hint: no fault, no effect on memory (`prefetchw` is a
/// no-op on x86-64 processors without it).
#[inline(always)]
fn prefetch_for_write<T>(p: *mut T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads no memory the program can observe and
    // never faults, whatever the address.
    unsafe {
        std::arch::asm!("prefetchw [{}]", in(reg) p, options(nostack, preserves_flags, readonly));
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{EventKind, Mode};
    use crate::site::LockSite;

    fn event(n: u64) -> Event {
        Event {
            kind: EventKind::Acquire,
            mode: Mode::Exclusive,
            site: LockSite::caller(),
            value_ticks: n,
            shift: 0,
            peer: 0,
            thread: 1,
            stack: 2,
            extra: None,
        }
    }

    #[test]
    fn events_come_out_in_order_and_a_full_queue_refuses() {
        let (queue, mut producer) = Queue::new(3);
        for n in 0..3 {
            assert!(producer.push(event(n)).is_ok());
        }
        // Three events fit, though the ring has four slots.
        assert_eq!(producer.push(event(3)).unwrap_err().value_ticks, 3);
        let mut seen = Vec::new();
        assert_eq!(queue.drain(|e| seen.push(e.value_ticks)), 3);
        assert_eq!(seen, [0, 1, 2]);
        // Room again, across the ring's end.
        for n in 10..13 {
            assert!(producer.push(event(n)).is_ok());
        }
        seen.clear();
        queue.drain(|e| seen.push(e.value_ticks));
        assert_eq!(seen, [10, 11, 12]);
    }

    #[test]
    fn a_thread_and_a_consumer_lose_nothing() {
        let (queue, mut producer) = Queue::new(64);
        let pusher = std::thread::spawn(move || {
            let mut refused = 0u64;
            for n in 0..100_000 {
                let mut e = event(n);
                while let Err(back) = producer.push(e) {
                    refused += 1;
                    e = back;
                    std::thread::yield_now();
                }
            }
            refused
        });
        let mut next = 0;
        while next < 100_000 {
            queue.drain(|e| {
                assert_eq!(e.value_ticks, next);
                next += 1;
            });
        }
        pusher.join().unwrap();
    }

    #[test]
    fn a_queue_is_reused_only_once_nothing_else_holds_it() {
        let (queue, mut producer) = Queue::new(2);
        assert!(producer.push(event(7)).is_ok());
        let Err(queue) = Queue::reuse(queue) else {
            panic!("reused while its producer still holds it");
        };
        drop(producer);
        let Ok((queue, mut producer)) = Queue::reuse(queue) else {
            panic!("not reused though nothing else holds it");
        };
        // What was left is gone; the full capacity is there again.
        assert!(producer.push(event(1)).is_ok());
        assert!(producer.push(event(2)).is_ok());
        assert!(producer.push(event(3)).is_err());
        let mut seen = Vec::new();
        queue.drain(|e| seen.push(e.value_ticks));
        assert_eq!(seen, [1, 2]);
    }

    #[test]
    fn events_left_in_a_dropped_queue_are_dropped() {
        let meta = crate::record::labels::ThreadMeta::current();
        let before = Arc::strong_count(&meta);
        let (queue, mut producer) = Queue::new(4);
        let mut e = event(0);
        e.extra = Some(Box::new(crate::record::EventExtra {
            thread: Some(Arc::clone(&meta)),
            ..Default::default()
        }));
        assert!(producer.push(e).is_ok());
        drop((queue, producer));
        assert_eq!(Arc::strong_count(&meta), before);
    }
}
