//! The hand-off from locking threads to the profiler thread, and the
//! aggregation of sampled events by (kind, lock, mode, thread, stack).

use std::cell::RefCell;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use parking_lot::RwLock;

use super::stack::{Frames, Stack};
use super::task::TaskLabels;
use super::thread::ThreadMeta;
use super::{sampler, Event, EventKind, Mode};
use crate::pprof::fxhash::FxHashMap;
use crate::site::SiteKey;

/// The running session's channel. Read by a locking thread only when its
/// cached sender belongs to another session.
static SINK: RwLock<Option<(u32, Sender<Event>)>> = RwLock::new(None);

static MAX_FRAMES: AtomicUsize = AtomicUsize::new(64);

/// Events dropped because the recorder's queue was full.
pub(crate) static DROPPED: AtomicU64 = AtomicU64::new(0);

pub(crate) fn max_frames() -> usize {
    MAX_FRAMES.load(Relaxed)
}

struct Cached {
    session: u32,
    sender: Option<Sender<Event>>,
    meta: Arc<ThreadMeta>,
    /// The (session, [`KNOWN_GENERATION`]) that `meta_sent` and `sent`
    /// describe.
    known_to: (u32, u32),
    /// Whether the recorder has this thread's labels.
    meta_sent: bool,
    /// The stacks this thread has sent in full.
    sent: SentStacks,
}

/// Bumped by the recorder when it forgets the stacks and threads it knows, so
/// that threads send them in full again.
static KNOWN_GENERATION: AtomicU32 = AtomicU32::new(0);

/// Which stacks a thread has sent in full: a small direct-mapped set of
/// stack hashes, allocated at the thread's first sampled event. A stack
/// evicted from it is just sent in full again.
struct SentStacks(Option<Box<[u64; SENT_SLOTS]>>);

const SENT_SLOTS: usize = 1024;

impl SentStacks {
    fn clear(&mut self) {
        if let Some(slots) = &mut self.0 {
            slots.fill(0);
        }
    }

    /// Whether `hash` was sent; marks it sent if not.
    fn check_and_mark(&mut self, hash: u64) -> bool {
        let slots = self.0.get_or_insert_with(|| Box::new([0; SENT_SLOTS]));
        // 0 marks an empty slot; a stack hashing to 0 is always sent in full.
        let slot = &mut slots[(hash as usize) % SENT_SLOTS];
        let sent = *slot == hash && hash != 0;
        *slot = hash;
        sent
    }

    /// Forgets `hash`: its full event was not delivered.
    fn unmark(&mut self, hash: u64) {
        if let Some(slot) = self.0.as_mut().map(|s| &mut s[(hash as usize) % SENT_SLOTS]) {
            if *slot == hash {
                *slot = 0;
            }
        }
    }
}

/// A thread as an event carries it: with its labels the first time, then by
/// id alone (no shared reference count touched per event).
#[derive(Debug)]
pub(crate) struct ThreadRef {
    pub(crate) id: u64,
    pub(crate) meta: Option<Arc<ThreadMeta>>,
}

/// A stack as an event carries it: in full the first time a thread sends it,
/// then by hash alone.
#[derive(Debug)]
pub(crate) enum StackRef {
    Full(Stack),
    Known(u64),
}

thread_local! {
    static CACHED: RefCell<Option<Cached>> = const { RefCell::new(None) };
}

/// Opens a session: events sent from now on reach the returned receiver.
pub(crate) fn open(session: u32, capacity: usize, max_frames: usize) -> Receiver<Event> {
    let (tx, rx) = crossbeam_channel::bounded(capacity);
    MAX_FRAMES.store(max_frames, Relaxed);
    *SINK.write() = Some((session, tx));
    rx
}

/// Closes the session: later events are not delivered.
pub(crate) fn close() {
    *SINK.write() = None;
}

/// Hands one event to the recorder without blocking. Returns whether it was
/// queued; a full queue drops it and counts the drop. Allocates only for a
/// stack this thread has not sent before.
pub(crate) fn send(
    kind: EventKind,
    site: SiteKey,
    mode: Mode,
    value_ticks: u64,
    frames: Frames<'_>,
    task: Option<TaskLabels>,
) -> bool {
    let Some(session) = sampler::session() else {
        return false;
    };
    let mut task = Some(task);
    let cached = CACHED.try_with(|cell| {
        let mut cached = cell.borrow_mut();
        let c = cached.get_or_insert_with(|| Cached {
            session: 0,
            sender: None,
            meta: ThreadMeta::current(),
            known_to: (0, 0),
            meta_sent: false,
            sent: SentStacks(None),
        });
        if c.session != session {
            c.session = session;
            c.sender = current_sender(session);
        }
        let Some(tx) = &c.sender else {
            return false;
        };
        let known_to = (session, KNOWN_GENERATION.load(Relaxed));
        if c.known_to != known_to {
            c.known_to = known_to;
            c.meta_sent = false;
            c.sent.clear();
        }
        let stack = if c.sent.check_and_mark(frames.hash) {
            StackRef::Known(frames.hash)
        } else {
            StackRef::Full(frames.to_stack())
        };
        let full_stack = matches!(stack, StackRef::Full(_));
        let full_meta = !c.meta_sent;
        let event = Event {
            kind,
            site,
            mode,
            value_ticks,
            thread: ThreadRef {
                id: c.meta.id,
                meta: full_meta.then(|| Arc::clone(&c.meta)),
            },
            task: task.take().flatten(),
            stack,
        };
        let sent = queue(tx, event);
        if sent {
            c.meta_sent = true;
        } else if full_stack {
            c.sent.unmark(frames.hash);
        }
        sent
    });
    match (cached, task) {
        (Ok(sent), _) => sent,
        // This thread's locals are being torn down: a guard released by
        // another thread-local's destructor. Its event still goes out.
        (Err(_), Some(task)) => {
            send_uncached(session, kind, site, mode, value_ticks, frames.to_stack(), task)
        }
        (Err(_), None) => false,
    }
}

#[cold]
#[inline(never)]
fn send_uncached(
    session: u32,
    kind: EventKind,
    site: SiteKey,
    mode: Mode,
    value_ticks: u64,
    stack: Stack,
    task: Option<TaskLabels>,
) -> bool {
    let Some(tx) = current_sender(session) else {
        return false;
    };
    queue(
        &tx,
        Event {
            kind,
            site,
            mode,
            value_ticks,
            thread: {
                let meta = ThreadMeta::current();
                ThreadRef {
                    id: meta.id,
                    meta: Some(meta),
                }
            },
            task,
            stack: StackRef::Full(stack),
        },
    )
}

fn current_sender(session: u32) -> Option<Sender<Event>> {
    SINK.read()
        .as_ref()
        .filter(|(s, _)| *s == session)
        .map(|(_, tx)| tx.clone())
}

fn queue(tx: &Sender<Event>, event: Event) -> bool {
    match tx.try_send(event) {
        Ok(()) => true,
        Err(TrySendError::Full(_)) => {
            DROPPED.fetch_add(1, Relaxed);
            false
        }
        Err(TrySendError::Disconnected(_)) => false,
    }
}

/// One aggregation key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SampleKey {
    pub(crate) kind: EventKind,
    pub(crate) site: SiteKey,
    pub(crate) mode: Mode,
    pub(crate) thread: Arc<ThreadMeta>,
    pub(crate) task: Option<TaskLabels>,
    pub(crate) stack: Stack,
}

/// An aggregation key as the recorder keeps it between flushes: the thread
/// by id and the stack by hash, so that recording an event clones and drops
/// no reference-counted value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct RawKey {
    kind: EventKind,
    site: SiteKey,
    mode: Mode,
    thread: u64,
    task: Option<TaskLabels>,
    stack: u64,
}

/// Sampled events with the same key, summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Aggregate {
    pub(crate) events: u64,
    /// Clock ticks while aggregating; the flush converts them to nanoseconds
    /// before the estimator sees them.
    pub(crate) total_ns: u64,
}

/// Aggregates events between two flushes: memory grows with distinct keys,
/// not with events.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    samples: FxHashMap<RawKey, Aggregate>,
    recorded: u64,
    /// Every stack sent in full this session (this generation), by hash.
    known: FxHashMap<u64, Stack>,
    /// Every thread's labels sent this session (this generation), by id.
    threads: FxHashMap<u64, Arc<ThreadMeta>>,
    /// Events whose stack came by hash but was forgotten meanwhile.
    unresolved: u64,
}

/// Distinct stacks the recorder remembers before it forgets them all and has
/// threads send them in full again: bounds its memory for programs with
/// ever-new stacks.
const MAX_KNOWN_STACKS: usize = 1 << 16;
/// The same for threads, for programs that start ever-new threads.
const MAX_KNOWN_THREADS: usize = 1 << 12;

impl Recorder {
    pub(crate) fn record(&mut self, event: Event) {
        // Resolve nothing per event: the thread and stack are checked to be
        // known and aggregated by id and hash; `take` attaches them.
        let thread_known = match event.thread.meta {
            Some(meta) => {
                self.threads.entry(event.thread.id).or_insert(meta);
                true
            }
            None => self.threads.contains_key(&event.thread.id),
        };
        let stack_hash = match event.stack {
            StackRef::Full(stack) => {
                let hash = stack.hash;
                self.known.entry(hash).or_insert(stack);
                Some(hash)
            }
            StackRef::Known(hash) => self.known.contains_key(&hash).then_some(hash),
        };
        let (true, Some(stack_hash)) = (thread_known, stack_hash) else {
            self.unresolved += 1;
            return;
        };
        self.recorded += 1;
        let key = RawKey {
            kind: event.kind,
            site: event.site,
            mode: event.mode,
            thread: event.thread.id,
            task: event.task,
            stack: stack_hash,
        };
        let agg = self.samples.entry(key).or_default();
        agg.events += 1;
        agg.total_ns = agg.total_ns.saturating_add(event.value_ticks);
    }

    /// Takes what was aggregated since the last call; keeps the table's
    /// capacity so that a steady workload allocates nothing more.
    ///
    /// Also returns the events lost because their stack or thread had been forgotten
    /// (counted as dropped), and forgets the known stacks when there are too
    /// many.
    pub(crate) fn take(&mut self) -> (Vec<(SampleKey, Aggregate)>, u64, u64) {
        let recorded = std::mem::take(&mut self.recorded);
        let unresolved = std::mem::take(&mut self.unresolved);
        let (known, threads) = (&self.known, &self.threads);
        let samples = self
            .samples
            .drain()
            .filter_map(|(k, agg)| {
                // Both were known when the event was recorded, and nothing is
                // forgotten but below, after this.
                let key = SampleKey {
                    kind: k.kind,
                    site: k.site,
                    mode: k.mode,
                    thread: Arc::clone(threads.get(&k.thread)?),
                    task: k.task,
                    stack: known.get(&k.stack)?.clone(),
                };
                Some((key, agg))
            })
            .collect();
        if self.known.len() > MAX_KNOWN_STACKS || self.threads.len() > MAX_KNOWN_THREADS {
            self.known = FxHashMap::default();
            self.threads = FxHashMap::default();
            KNOWN_GENERATION.fetch_add(1, Relaxed);
        }
        (samples, recorded, unresolved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(thread: &Arc<ThreadMeta>, with_meta: bool, stack: StackRef, ticks: u64) -> Event {
        Event {
            kind: EventKind::Acquire,
            site: SiteKey {
                file: "recorder.rs",
                line: 1,
                column: 1,
                name: Some("l"),
            },
            mode: Mode::Exclusive,
            value_ticks: ticks,
            thread: ThreadRef {
                id: thread.id,
                meta: with_meta.then(|| Arc::clone(thread)),
            },
            task: None,
            stack,
        }
    }

    #[test]
    fn stacks_and_threads_sent_once_resolve_later_events() {
        let thread = ThreadMeta::current();
        let stack = Stack::new(&[0x1000, 0x2000], 0);
        let mut recorder = Recorder::default();
        recorder.record(event(&thread, true, StackRef::Full(stack.clone()), 10));
        recorder.record(event(&thread, false, StackRef::Known(stack.hash), 5));
        // A stack this recorder was never sent: counted, not guessed.
        recorder.record(event(&thread, false, StackRef::Known(stack.hash ^ 1), 7));
        let (samples, recorded, unresolved) = recorder.take();
        assert_eq!((recorded, unresolved), (2, 1));
        assert_eq!(samples.len(), 1);
        let (key, agg) = &samples[0];
        assert_eq!((agg.events, agg.total_ns), (2, 15));
        assert_eq!(key.stack, stack);
        assert_eq!(key.thread.id, thread.id);
    }

    #[test]
    fn a_thread_whose_labels_never_arrived_is_not_guessed() {
        let thread = ThreadMeta::current();
        let stack = Stack::new(&[0x1000], 0);
        let mut recorder = Recorder::default();
        recorder.record(event(&thread, false, StackRef::Full(stack), 1));
        let (samples, recorded, unresolved) = recorder.take();
        assert_eq!((samples.len(), recorded, unresolved), (0, 0, 1));
    }

    #[test]
    fn the_sent_set_remembers_until_evicted_or_unmarked() {
        let mut sent = SentStacks(None);
        assert!(!sent.check_and_mark(42));
        assert!(sent.check_and_mark(42));
        // Another hash in the same slot evicts it: it is sent again.
        assert!(!sent.check_and_mark(42 + SENT_SLOTS as u64));
        assert!(!sent.check_and_mark(42));
        sent.unmark(42);
        assert!(!sent.check_and_mark(42));
        sent.clear();
        assert!(!sent.check_and_mark(42));
        // 0 marks an empty slot, so a stack hashing to 0 is always sent.
        assert!(!sent.check_and_mark(0));
        assert!(!sent.check_and_mark(0));
    }
}
