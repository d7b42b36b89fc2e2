//! The hand-off from locking threads to the profiler thread, and the
//! aggregation of sampled events by (kind, lock, mode, thread, stack).
//!
//! Each thread queues its sampled events in a ring of its own (see
//! [`queue`](super::queue)), which the profiler thread drains at each poll.
//! A shared channel made every event fetch the channel's cache lines back
//! from the profiler thread's core, and its locked instructions stalled the
//! locking thread until they came.

use std::cell::{Cell, RefCell};
use std::num::NonZeroU64;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::Arc;

use super::forksafe::ForkSafeMutex;
use super::labels::{TaskLabels, ThreadMeta};
use super::queue::{Producer, Queue};
use super::span::{LocalRoot, SpanLabels};
use super::spread::Spread;
use super::stack::{BufferedStack, Frames, Stack};
use super::{sampler, Event, EventExtra, EventKind, Mode};
use crate::site::{LockSite, SiteKey};
use crate::util::fxhash::FxHashMap;

/// Emptied queues kept for new threads (8 MiB at the default capacity):
/// programs that start threads again and again reuse warm memory.
const SPARE_QUEUES: usize = 32;

/// The running session's queues.
struct Sink {
    session: u32,
    /// Events each queue holds at most.
    capacity: usize,
    queues: Vec<Arc<Queue>>,
    /// Emptied queues of exited threads, for new threads to reuse.
    spare_queues: Vec<Arc<Queue>>,
    /// Queues the events of threads whose thread-locals are being torn
    /// down, one at a time under the sink's lock; its queue is in `queues`.
    orphans: Producer,
}

/// Locked by a thread at its first sampled event of a session, and by the
/// profiler thread at each poll.
static SINK: ForkSafeMutex<Option<Sink>> = ForkSafeMutex::new(|| None);

/// The sink's lock, for the fault-injection tests.
#[cfg(feature = "fault-injection")]
pub(crate) fn hold_sink() -> impl Drop {
    SINK.lock()
}

/// In a forked child, before it starts a profiler: the parent's profiler
/// thread may have held the sink at the fork. The parent's session is
/// dropped either way.
pub(super) fn after_fork() {
    SINK.renew(|_| None);
}

static MAX_FRAMES: AtomicUsize = AtomicUsize::new(64);

/// Events dropped because the recorder's queue was full.
pub(super) static DROPPED: AtomicU64 = AtomicU64::new(0);

pub(crate) fn max_frames() -> usize {
    MAX_FRAMES.load(Relaxed)
}

struct Cached {
    session: u32,
    /// This thread's queue in `session`.
    queue: Option<Producer>,
    meta: Arc<ThreadMeta>,
    /// The (session, [`KNOWN_GENERATION`]) that `meta_sent` and `sent`
    /// describe.
    known_to: (u32, u32),
    /// Whether the recorder has this thread's labels.
    meta_sent: bool,
    /// The stacks this thread has sent in full.
    sent: SentStacks,
    /// An event's extra part allocated ahead (by [`prepare`]), for the next
    /// new stack sent while a user's lock is held.
    spare: Option<Box<EventExtra>>,
    /// The same without a stack buffer, for the next events that need an
    /// extra part for their labels alone (their span, say): one for a
    /// sampled acquisition and one for its release, for locks nested a few
    /// deep, since a release may come while the thread holds other locks
    /// and [`prepare`] runs only before sampled acquisitions.
    spare_labels: [Option<Box<EventExtra>>; SPARE_LABELS],
}

/// Label-only extra parts kept ahead per thread (see `Cached::spare_labels`).
const SPARE_LABELS: usize = 4;

impl Cached {
    /// This thread's state, made on first use and registered for `session`
    /// (allocates the first time, and when the session is new).
    fn in_session(cached: &mut Option<Cached>, session: u32) -> &mut Cached {
        let c = cached.get_or_insert_with(|| Cached {
            session: 0,
            queue: None,
            meta: ThreadMeta::current(),
            known_to: (0, 0),
            meta_sent: false,
            sent: SentStacks(None),
            spare: None,
            spare_labels: Default::default(),
        });
        if c.session != session {
            c.session = session;
            c.queue = register(session);
        }
        c
    }
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

thread_local! {
    static CACHED: RefCell<Option<Cached>> = const { RefCell::new(None) };
    /// The session for which [`prepare`] last left this thread with all it
    /// allocates; 0 once an event has taken a part it had allocated ahead.
    static PREPARED: Cell<u32> = const { Cell::new(0) };
}

/// Opens a session: events sent from now on are queued for the returned
/// [`Events`], at most `capacity` per thread.
pub(super) fn open(session: u32, capacity: usize, max_frames: usize) -> Events {
    MAX_FRAMES.store(max_frames, Relaxed);
    let (orphans_queue, orphans) = Queue::new(capacity);
    *SINK.lock() = Some(Sink {
        session,
        capacity,
        queues: vec![orphans_queue],
        spare_queues: Vec::new(),
        orphans,
    });
    Events(())
}

/// Closes the session: later events are not delivered, and those still
/// queued are dropped. [`Events::close`] records them first.
pub(super) fn close() {
    *SINK.lock() = None;
}

/// The profiler thread's end of the queues.
#[derive(Debug)]
pub(crate) struct Events(());

impl Events {
    /// Records every event queued now; returns how many there were. Forgets
    /// the queues of threads that are gone, once emptied.
    pub(crate) fn poll(&mut self, recorder: &mut Recorder) -> usize {
        // Taken out, so that threads registering meanwhile do not wait for
        // the events to be recorded.
        let queues = match &mut *SINK.lock() {
            Some(sink) => std::mem::take(&mut sink.queues),
            None => return 0,
        };
        let mut n = 0;
        let mut live = Vec::with_capacity(queues.len());
        let mut spare = Vec::new();
        for queue in queues {
            // Only this list holds it: its thread's locals are gone, and no
            // event can be queued to it any more.
            let gone = Arc::strong_count(&queue) == 1;
            if gone {
                // Pairs with the thread's release of its reference.
                fence(Acquire);
            }
            n += queue.drain(|event| recorder.record(event));
            if gone {
                spare.push(queue);
            } else {
                live.push(queue);
            }
        }
        if let Some(sink) = &mut *SINK.lock() {
            sink.queues.append(&mut live);
            let room = SPARE_QUEUES.saturating_sub(sink.spare_queues.len());
            sink.spare_queues.extend(spare.into_iter().take(room));
        }
        n
    }

    /// Closes the session and records what was still queued.
    pub(crate) fn close(&mut self, recorder: &mut Recorder) -> usize {
        let Some(sink) = SINK.lock().take() else {
            return 0;
        };
        sink.queues
            .iter()
            .map(|queue| queue.drain(|event| recorder.record(event)))
            .sum()
    }
}

/// Allocates now what this thread's next event may need (its labels, its
/// queue, the set of stacks it sent, a buffer for a new stack), so that
/// sending it allocates nothing: a sampled acquisition calls this before it
/// takes the user's lock, which a global allocator may take too.
pub(crate) fn prepare() {
    // Nothing taken since: one thread-local read, not the dozen checks
    // below, on every sampled acquisition.
    if prepared() {
        return;
    }
    if let Some(session) = sampler::session() {
        prepare_now(session);
    }
}

/// Whether [`prepare`] has nothing to do (no session, or nothing taken since
/// the last): a sampled acquisition checks it before entering profiler code
/// for `prepare`, whose guard writes thread-locals that the lock's CAS after
/// it would wait to drain.
#[inline(always)]
pub(crate) fn prepared() -> bool {
    sampler::session().is_none_or(|session| PREPARED.try_with(Cell::get) == Ok(session))
}

#[cold]
#[inline(never)]
fn prepare_now(session: u32) {
    super::stack::prepare_thread();
    let _ = CACHED.try_with(|cell| {
        let Ok(mut cached) = cell.try_borrow_mut() else {
            return;
        };
        let c = Cached::in_session(&mut cached, session);
        c.sent.0.get_or_insert_with(|| Box::new([0; SENT_SLOTS]));
        let room = max_frames();
        if c.spare
            .as_ref()
            .and_then(|s| s.buffered.as_ref())
            .is_none_or(|b| b.ips.capacity() < room)
        {
            c.spare = Some(Box::new(EventExtra {
                buffered: Some(BufferedStack::with_room(room)),
                ..Default::default()
            }));
        }
        for spare in c.spare_labels.iter_mut().filter(|s| s.is_none()) {
            *spare = Some(Box::default());
        }
        let _ = PREPARED.try_with(|p| p.set(session));
    });
}

/// This thread's queue in `session`, registered now.
#[cold]
fn register(session: u32) -> Option<Producer> {
    let mut sink = SINK.lock();
    let sink = sink.as_mut().filter(|s| s.session == session)?;
    let reused = sink.spare_queues.pop().and_then(|q| Queue::reuse(q).ok());
    let (queue, producer) = reused.unwrap_or_else(|| Queue::new(sink.capacity));
    sink.queues.push(queue);
    Some(producer)
}

/// Hands one event to the recorder without blocking. Returns whether it was
/// queued; a full queue drops it and counts the drop. Allocates only for a
/// stack this thread has not sent before.
#[inline(never)]
pub(crate) fn send(
    kind: EventKind,
    site: &LockSite,
    mode: Mode,
    value_ticks: u64,
    shift: u8,
    frames: Frames<'_>,
) -> bool {
    // No task to move around: copying an `Option<TaskLabels>` through the
    // stack cost store-forwarding stalls, 40% of this function.
    send_inner(kind, site, mode, value_ticks, shift, 0, frames, None)
}

/// Sends a holder's [`EventKind::Caused`] event: `peer` names the waiter's
/// stack.
#[inline(never)]
pub(crate) fn send_caused(
    site: &LockSite,
    mode: Mode,
    ticks: u64,
    shift: u8,
    peer: u32,
    frames: Frames<'_>,
) -> bool {
    send_inner(EventKind::Caused, site, mode, ticks, shift, peer, frames, None)
}

/// [`send`] for an async lock's event, with its task's labels.
#[cfg(feature = "tokio")]
#[inline(never)]
pub(crate) fn send_task(
    kind: EventKind,
    site: &LockSite,
    mode: Mode,
    value_ticks: u64,
    shift: u8,
    frames: Frames<'_>,
    task: Option<TaskLabels>,
) -> bool {
    send_inner(kind, site, mode, value_ticks, shift, 0, frames, task)
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn send_inner(
    kind: EventKind,
    site: &LockSite,
    mode: Mode,
    value_ticks: u64,
    shift: u8,
    peer: u32,
    frames: Frames<'_>,
    mut task: Option<TaskLabels>,
) -> bool {
    let Some(session) = sampler::session() else {
        return false;
    };
    // The cell is reached first and the event built here, not in a closure
    // passed to `try_with`: that closure stayed a function of its own, a
    // call and a frame more per event.
    let event = |thread, extra| Event {
        kind,
        mode,
        site: *site,
        value_ticks,
        shift,
        peer,
        thread,
        stack: frames.hash,
        extra,
    };
    let Ok(cell) = CACHED.try_with(|cell| cell as *const RefCell<Option<Cached>>) else {
        // This thread's locals are being torn down: a guard released by
        // another thread-local's destructor. Its event still goes out.
        return send_uncached(session, event(0, None), frames.to_stack(), task);
    };
    // SAFETY: `cell` is this thread's `CACHED`, alive when reached above;
    // a thread-local is destroyed only by its thread's exit, after or
    // between the destructors it runs, never during this call.
    let cell = unsafe { &*cell };
    let mut cached = cell.borrow_mut();
    let c = Cached::in_session(&mut cached, session);
    let Some(queue) = &mut c.queue else {
        return false;
    };
    let known_to = (session, KNOWN_GENERATION.load(Relaxed));
    if c.known_to != known_to {
        c.known_to = known_to;
        c.meta_sent = false;
        c.sent.clear();
    }
    let full_stack = !c.sent.check_and_mark(frames.hash);
    // The one call out of the recording core, on sampled events only: an
    // Arc's count and a table look-up in the integration, no allocation.
    let span = super::span::current();
    let extra = if full_stack || !c.meta_sent || task.is_some() || span.is_some() {
        Some(extra(
            &c.meta,
            c.meta_sent,
            &mut c.spare,
            &mut c.spare_labels,
            full_stack,
            &frames,
            task.take(),
            span,
        ))
    } else {
        None
    };
    let sent = push(queue, event(c.meta.id, extra));
    if sent {
        c.meta_sent = true;
    } else if full_stack {
        c.sent.unmark(frames.hash);
    }
    sent
}

/// The rarely sent part of an event (see [`EventExtra`]): out of line, so
/// that the event's hot path keeps a small frame. Allocates nothing when
/// [`prepare`] left this thread its parts.
#[cold]
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn extra(
    meta: &Arc<ThreadMeta>,
    meta_sent: bool,
    spare: &mut Option<Box<EventExtra>>,
    spare_labels: &mut [Option<Box<EventExtra>>; SPARE_LABELS],
    full_stack: bool,
    frames: &Frames<'_>,
    task: Option<TaskLabels>,
    span: Option<super::span::SpanLabels>,
) -> Box<EventExtra> {
    let thread = (!meta_sent).then(|| Arc::clone(meta));
    let spare = if full_stack {
        spare
            .take()
            .filter(|spare| spare.buffered.as_ref().is_some_and(|b| b.fits(frames)))
    } else {
        // Labels alone (every sampled event in a span has some): the
        // stack buffer stays for the next new stack.
        spare_labels.iter_mut().find_map(Option::take)
    };
    // A part allocated ahead is taken (or was missing): the next
    // sampled acquisition prepares again.
    let _ = PREPARED.try_with(|p| p.set(0));
    match spare {
        // Allocates nothing: a user's lock may be held.
        Some(mut extra) => {
            extra.thread = thread;
            extra.task = task;
            extra.span = span;
            if let (true, Some(b)) = (full_stack, &mut extra.buffered) {
                b.fill(frames);
            }
            extra
        }
        None => Box::new(EventExtra {
            thread,
            stack: full_stack.then(|| frames.to_stack()),
            buffered: None,
            task,
            span,
        }),
    }
}

#[cold]
#[inline(never)]
fn send_uncached(session: u32, mut event: Event, stack: Stack, task: Option<TaskLabels>) -> bool {
    let meta = ThreadMeta::current();
    let mut sink = SINK.lock();
    let Some(sink) = sink.as_mut().filter(|s| s.session == session) else {
        return false;
    };
    event.thread = meta.id;
    event.extra = Some(Box::new(EventExtra {
        thread: Some(meta),
        stack: Some(stack),
        buffered: None,
        task,
        // Its thread-locals are being torn down, a tracer's too, maybe.
        span: None,
    }));
    push(&mut sink.orphans, event)
}

/// Queues `event` unless its queue is full, which drops it and counts the
/// drop.
#[inline(always)]
fn push(queue: &mut Producer, event: Event) -> bool {
    // Inlined, so that the event's fields are stored straight into its
    // slot: built on the stack and copied, its 16-byte loads waited on the
    // narrower stores that had just written it (a failed store forwarding,
    // most of the push's time).
    let queued = queue.push(event).is_ok();
    if !queued {
        DROPPED.fetch_add(1, Relaxed);
    }
    queued
}

/// One aggregation key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SampleKey {
    pub(crate) kind: EventKind,
    pub(crate) site: SiteKey,
    pub(crate) mode: Mode,
    pub(crate) thread: Arc<ThreadMeta>,
    pub(crate) task: Option<TaskLabels>,
    /// The span the events happened in.
    pub(crate) span: Option<SampleSpan>,
    pub(crate) stack: Stack,
    /// For [`EventKind::Caused`], the waiter's stack id; else 0.
    pub(crate) peer: u32,
}

/// The span of aggregated events, as a profile labels it: its endpoint is
/// read when the period is taken (see [`span`](super::span)).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct SampleSpan {
    pub(crate) span_id: u64,
    pub(crate) local_root_span_id: Option<u64>,
    /// The local root span's endpoint, if it had ended as one by then.
    pub(crate) endpoint: Option<Arc<str>>,
}

/// A span as the recorder aggregates by it: its id and its local root's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct SpanKey {
    span_id: NonZeroU64,
    local_root: Option<NonZeroU64>,
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
    span: Option<SpanKey>,
    stack: u64,
    peer: u32,
}

/// Sampled events with the same key over one period, summed.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Aggregate {
    pub(crate) events: u64,
    /// The events' weights summed: each stands for `2^shift` events sampled
    /// at `capture_pct` (the sampling budget); equal to `events` when the
    /// budget never applied.
    pub(crate) weight: u64,
    /// The values weighted the same way.
    pub(crate) total_ns: u64,
    /// What the standard error of the estimate needs beside, in nanoseconds.
    pub(crate) spread: Spread,
}

/// An [`Aggregate`] as the recorder sums it between two flushes: in clock
/// ticks, converted to nanoseconds once, when the period is taken.
#[derive(Debug, Clone, Copy, Default)]
struct TickSums {
    events: u64,
    weight: u64,
    total_ticks: u64,
    spread: Spread,
}

impl TickSums {
    fn in_ns(self, ns_per_tick: f64) -> Aggregate {
        Aggregate {
            events: self.events,
            weight: self.weight,
            total_ns: super::clock::to_ns(self.total_ticks, ns_per_tick),
            spread: self.spread.scaled(ns_per_tick),
        }
    }
}

/// What [`Recorder::take`] returns.
#[derive(Debug)]
pub(crate) struct Taken {
    /// The aggregates, in nanoseconds.
    pub(crate) samples: Vec<(SampleKey, Aggregate)>,
    /// Events aggregated.
    pub(crate) recorded: u64,
    /// Events lost because their stack or thread had been forgotten.
    pub(crate) unresolved: u64,
}

/// Aggregates events between two flushes: memory grows with distinct keys,
/// not with events.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    samples: FxHashMap<RawKey, TickSums>,
    recorded: u64,
    /// Every stack sent in full this session (this generation), by hash.
    known: FxHashMap<u64, Stack>,
    /// Every thread's labels sent this session (this generation), by id.
    threads: FxHashMap<u64, Arc<ThreadMeta>>,
    /// Events whose stack came by hash but was forgotten meanwhile.
    unresolved: u64,
    /// The local root spans of this period's events, by id: their
    /// endpoints are read when the period is taken.
    roots: FxHashMap<u64, Arc<LocalRoot>>,
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
        let mut task = None;
        let mut span = None;
        if let Some(extra) = event.extra {
            let extra = *extra;
            if let Some(meta) = extra.thread {
                self.threads.entry(event.thread).or_insert(meta);
            }
            if let Some(stack) = extra.stack {
                self.known.entry(stack.hash).or_insert(stack);
            }
            if let Some(buffered) = extra.buffered {
                self.known
                    .entry(buffered.hash)
                    .or_insert_with(|| buffered.to_stack());
            }
            task = extra.task;
            span = extra.span.map(|s| self.span_key(s));
        }
        if !self.threads.contains_key(&event.thread) || !self.known.contains_key(&event.stack) {
            self.unresolved += 1;
            return;
        }
        // `events recorded` counts sampled acquisitions and releases; the
        // caused-wait charges that holders send ride along uncounted.
        if event.kind != EventKind::Caused {
            self.recorded += 1;
        }
        let key = RawKey {
            kind: event.kind,
            site: event.site.key(),
            mode: event.mode,
            thread: event.thread,
            task,
            span,
            stack: event.stack,
            peer: event.peer,
        };
        let agg = self.samples.entry(key).or_default();
        agg.events += 1;
        let shift = u32::from(event.shift.min(super::sampler::MAX_SHIFT));
        agg.weight = agg.weight.saturating_add(1 << shift);
        agg.total_ticks = agg
            .total_ticks
            .saturating_add(event.value_ticks.saturating_mul(1 << shift));
        agg.spread.add(1 << shift, event.value_ticks);
    }

    /// The key of `span`, keeping its local root for the flush.
    fn span_key(&mut self, span: SpanLabels) -> SpanKey {
        let local_root = span.root.map(|root| {
            let id = root.id();
            self.roots.entry(id.get()).or_insert(root);
            id
        });
        SpanKey {
            span_id: span.span_id,
            local_root,
        }
    }

    /// Takes what was aggregated since the last call, converted to
    /// nanoseconds at `ns_per_tick`; keeps the table's capacity so that a
    /// steady workload allocates nothing more. Forgets the known stacks when
    /// there are too many.
    pub(crate) fn take(&mut self, ns_per_tick: f64) -> Taken {
        let recorded = std::mem::take(&mut self.recorded);
        let unresolved = std::mem::take(&mut self.unresolved);
        let (known, threads, roots) = (&self.known, &self.threads, &self.roots);
        // The endpoints are read now, at the flush: a root span's resource
        // is final only when it ends, after the events taken under it.
        let span_of = |key: SpanKey| {
            let root = key.local_root.map(NonZeroU64::get);
            SampleSpan {
                span_id: key.span_id.get(),
                local_root_span_id: root,
                endpoint: root
                    .and_then(|id| roots.get(&id))
                    .and_then(|r| r.endpoint().cloned()),
            }
        };
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
                    span: k.span.map(span_of),
                    stack: known.get(&k.stack)?.clone(),
                    peer: k.peer,
                };
                Some((key, agg.in_ns(ns_per_tick)))
            })
            .collect();
        self.roots.clear();
        if self.known.len() > MAX_KNOWN_STACKS || self.threads.len() > MAX_KNOWN_THREADS {
            self.known = FxHashMap::default();
            self.threads = FxHashMap::default();
            KNOWN_GENERATION.fetch_add(1, Relaxed);
        }
        Taken {
            samples,
            recorded,
            unresolved,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An event by `thread` on `stack`, with the thread's labels and the
    /// stack's frames as asked.
    fn event(thread: &Arc<ThreadMeta>, with_meta: bool, stack: &Stack, full: bool, ticks: u64) -> Event {
        Event {
            kind: EventKind::Acquire,
            mode: Mode::Exclusive,
            site: LockSite::caller().with_name("l"),
            value_ticks: ticks,
            shift: 0,
            peer: 0,
            thread: thread.id,
            stack: stack.hash,
            extra: Some(Box::new(EventExtra {
                thread: with_meta.then(|| Arc::clone(thread)),
                stack: full.then(|| stack.clone()),
                buffered: None,
                task: None,
                span: None,
            })),
        }
    }

    #[test]
    fn stacks_and_threads_sent_once_resolve_later_events() {
        let thread = ThreadMeta::current();
        let stack = Stack::new(&[0x1000, 0x2000], 0);
        let mut recorder = Recorder::default();
        recorder.record(event(&thread, true, &stack, true, 10));
        recorder.record(event(&thread, false, &stack, false, 5));
        // A stack this recorder was never sent: counted, not guessed.
        let unknown = Stack::new(&[0x3000], 0);
        recorder.record(event(&thread, false, &unknown, false, 7));
        let taken = recorder.take(1.0);
        assert_eq!((taken.recorded, taken.unresolved), (2, 1));
        assert_eq!(taken.samples.len(), 1);
        let (key, agg) = &taken.samples[0];
        assert_eq!((agg.events, agg.total_ns), (2, 15));
        assert_eq!((agg.spread.wvv, agg.spread.ww), (125.0, 2.0));
        assert_eq!(key.stack, stack);
        assert_eq!(key.thread.id, thread.id);
    }

    #[test]
    fn a_thread_whose_labels_never_arrived_is_not_guessed() {
        let thread = ThreadMeta::current();
        let stack = Stack::new(&[0x1000], 0);
        let mut recorder = Recorder::default();
        recorder.record(event(&thread, false, &stack, true, 1));
        let taken = recorder.take(1.0);
        assert_eq!((taken.samples.len(), taken.recorded, taken.unresolved), (0, 0, 1));
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
