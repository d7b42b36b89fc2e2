//! The hand-off from locking threads to the profiler thread, and the
//! aggregation of sampled events by (kind, lock, mode, thread, stack).

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use parking_lot::RwLock;

use super::stack::Stack;
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
/// queued; a full queue drops it and counts the drop.
pub(crate) fn send(
    kind: EventKind,
    site: SiteKey,
    mode: Mode,
    value_ns: u64,
    stack: Stack,
    task: Option<TaskLabels>,
) -> bool {
    let Some(session) = sampler::session() else {
        return false;
    };
    let mut parts = Some((stack, task));
    let cached = CACHED.try_with(|cell| {
        let mut cached = cell.borrow_mut();
        let c = cached.get_or_insert_with(|| Cached {
            session: 0,
            sender: None,
            meta: ThreadMeta::current(),
        });
        if c.session != session {
            c.session = session;
            c.sender = current_sender(session);
        }
        let Some(tx) = &c.sender else {
            return false;
        };
        let Some((stack, task)) = parts.take() else {
            return false;
        };
        queue(
            tx,
            Event {
                kind,
                site,
                mode,
                value_ns,
                thread: Arc::clone(&c.meta),
                task,
                stack,
            },
        )
    });
    match (cached, parts) {
        (Ok(sent), _) => sent,
        // This thread's locals are being torn down: a guard released by
        // another thread-local's destructor. Its event still goes out.
        (Err(_), Some((stack, task))) => send_uncached(session, kind, site, mode, value_ns, stack, task),
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
    value_ns: u64,
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
            value_ns,
            thread: ThreadMeta::current(),
            task,
            stack,
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
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct SampleKey {
    pub(crate) kind: EventKind,
    pub(crate) site: SiteKey,
    pub(crate) mode: Mode,
    pub(crate) thread: Arc<ThreadMeta>,
    pub(crate) task: Option<TaskLabels>,
    pub(crate) stack: Stack,
}

/// Sampled events with the same key, summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Aggregate {
    pub(crate) events: u64,
    pub(crate) total_ns: u64,
}

/// Aggregates events between two flushes: memory grows with distinct keys,
/// not with events.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    // Fx: every event hashes its whole stack here, on the recorder thread.
    samples: FxHashMap<SampleKey, Aggregate>,
    recorded: u64,
}

impl Recorder {
    pub(crate) fn record(&mut self, event: Event) {
        self.recorded += 1;
        let key = SampleKey {
            kind: event.kind,
            site: event.site,
            mode: event.mode,
            thread: event.thread,
            task: event.task,
            stack: event.stack,
        };
        let agg = self.samples.entry(key).or_default();
        agg.events += 1;
        agg.total_ns = agg.total_ns.saturating_add(event.value_ns);
    }

    /// Takes what was aggregated since the last call; keeps the table's
    /// capacity so that a steady workload allocates nothing more.
    pub(crate) fn take(&mut self) -> (Vec<(SampleKey, Aggregate)>, u64) {
        let recorded = std::mem::take(&mut self.recorded);
        (self.samples.drain().collect(), recorded)
    }
}
