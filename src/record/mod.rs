//! The non-generic recording core: the sampling decision, exact per-lock
//! totals, stack capture and the hand-off of sampled events to the recorder.
//!
//! The lock types in `sync/` call [`lock`], [`try_lock`], [`lock_for`] and
//! [`release`] with their raw lock, their [`LockSite`] and their
//! [`StatsSlot`]. The fast paths are `#[inline(always)]`; everything that
//! reads a clock, captures a stack or talks to the recorder is `#[cold]`.

pub(crate) mod bench;
pub(crate) mod blame;
pub(crate) mod clock;
#[cfg(feature = "fault-injection")]
pub(crate) mod fault;
pub(crate) mod forksafe;
mod handle;
pub(crate) mod labels;
pub(crate) mod queue;
pub(crate) mod recorder;
pub(crate) mod report;
pub(crate) mod sampler;
pub(crate) mod session;
pub(crate) mod span;
pub(crate) mod spread;
pub(crate) mod stack;
pub(crate) mod stats;
#[cfg(feature = "tokio")]
pub(crate) mod task;

use std::num::NonZeroU64;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::site::LockSite;
pub(crate) use handle::LockHandle;
pub(crate) use stats::StatsSlot;

/// How a lock was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Mode {
    /// A mutex or re-entrant mutex.
    Exclusive,
    /// The shared side of a read-write lock.
    Read,
    /// The exclusive side of a read-write lock.
    Write,
}

impl Mode {
    /// Index into per-mode tables: the exclusive modes share slot 0.
    #[inline(always)]
    pub(crate) fn index(self) -> usize {
        match self {
            Mode::Exclusive | Mode::Write => 0,
            Mode::Read => 1,
        }
    }

    /// Whether several threads can hold the lock at once in this mode.
    #[inline(always)]
    pub(crate) fn shared(self) -> bool {
        matches!(self, Mode::Read)
    }

    /// The `lock mode` label, for read-write locks only.
    pub(crate) fn label(self) -> Option<&'static str> {
        match self {
            Mode::Exclusive => None,
            Mode::Read => Some("read"),
            Mode::Write => Some("write"),
        }
    }
}

/// Carried by a guard: set when its acquisition was sampled, so that its
/// release is recorded with a hold time and the acquisition's weight. The
/// acquisition's clock reading is in the low 58 bits (years of ticks), the
/// sampling budget's shift (see `sampler`) in the top 6.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ticket(Option<NonZeroU64>);

const TICK_BITS: u32 = 58;
const TICK_MASK: u64 = (1 << TICK_BITS) - 1;

impl Ticket {
    pub(crate) const NONE: Ticket = Ticket(None);

    /// An unsampled acquisition whose count is made at its release: its
    /// lock's name had no slot in the thread's table yet, and making one
    /// allocates, which must not happen while the lock is held (a global
    /// allocator may take that very lock). Shift 63 never comes from a
    /// sample.
    const COUNT_AT_RELEASE: Ticket = Ticket(NonZeroU64::new(u64::MAX));

    pub(crate) fn sampled(acquired_at: u64, shift: u8) -> Ticket {
        let packed = (acquired_at & TICK_MASK).max(1) | (u64::from(shift & 63) << TICK_BITS);
        Ticket(NonZeroU64::new(packed))
    }

    /// The acquisition's clock reading and shift, if it was sampled.
    #[inline(always)]
    pub(crate) fn sampled_at(self) -> Option<(u64, u8)> {
        self.0
            .filter(|_| self != Ticket::COUNT_AT_RELEASE)
            .map(|p| (p.get() & TICK_MASK, (p.get() >> TICK_BITS) as u8))
    }

    /// A key for this acquisition, unique on its thread (0 for none).
    #[inline]
    pub(crate) fn key(self) -> u64 {
        self.0.map_or(0, NonZeroU64::get)
    }

    /// Ticks from the acquisition to `released_at` (a [`clock::now`]).
    pub(crate) fn held_until(acquired_at: u64, released_at: u64) -> u64 {
        clock::between(acquired_at, released_at & TICK_MASK)
    }
}

/// The raw operations of one lock in one mode, as the recording core needs
/// them.
pub(crate) trait RawAcquire {
    fn try_acquire(&self) -> bool;
    fn acquire(&self);
    fn try_acquire_for(&self, timeout: Duration) -> bool;
    /// The uncontended acquisition alone: `false` means this acquisition
    /// would wait (or might), and the caller times [`acquire_slow`].
    ///
    /// [`acquire_slow`]: RawAcquire::acquire_slow
    #[inline(always)]
    fn try_fast(&self) -> bool {
        self.try_acquire()
    }
    /// Blocks until acquired, leaving `record` for the holders it waits
    /// behind to be charged with (see [`blame`]), where the raw lock supports
    /// it.
    #[inline(always)]
    fn acquire_recorded(&self, record: &blame::WaitRecord) {
        let _ = record;
        self.acquire()
    }
    /// [`try_acquire_for`](RawAcquire::try_acquire_for), leaving `record`
    /// as [`acquire_recorded`](RawAcquire::acquire_recorded) does.
    #[inline(always)]
    fn try_acquire_for_recorded(&self, record: &blame::WaitRecord, timeout: Duration) -> bool {
        let _ = record;
        self.try_acquire_for(timeout)
    }
    /// Blocks until acquired, after `try_fast` failed, and returns the
    /// [`clock::now`] of the moment it was: read just before the acquiring
    /// instruction where the raw lock allows, so that the critical section
    /// others wait behind is not lengthened by the read.
    #[inline(always)]
    fn acquire_slow_timed(&self) -> u64 {
        self.acquire();
        clock::now()
    }
}

/// Acquires through `raw`, recording as the sampler decides.
///
/// An unsampled acquisition is the raw lock's uncontended CAS
/// ([`RawAcquire::try_fast`]) next to thread-local reads and writes (the
/// countdown, and the thread's exact count for the lock's name): no clock, no
/// allocation, no shared write but the lock's own. Only when that CAS fails is
/// the wait timed (`lock_contended`), around the raw lock's slow path,
/// so that each lock's total wait is exact: with sampled waits alone,
/// heavy-tailed waits at 1 % capture gave totals off by −84 % to +109 % in
/// five runs (`examples/fidelity.rs`). In exclusive modes the stores come
/// after the lock's atomic instruction, with the lock held (the countdown's
/// store before the CAS measured 3 ns); for shared reads they go before the
/// CAS: between the CAS and the unlock's `xadd` they measured 3–4 ns, before
/// it nothing.
#[inline(always)]
pub(crate) fn lock(raw: impl RawAcquire, handle: LockHandle<'_>, mode: Mode) -> Ticket {
    let Some(session) = sampler::session() else {
        raw.acquire();
        return Ticket::NONE;
    };
    let Some(countdown) = sampler::peek(session) else {
        return lock_expired(raw, handle, mode, session);
    };
    if mode.shared() {
        sampler::commit(countdown);
        if !handle.count_held(mode) {
            handle.count_unlocked(mode);
        }
        if !raw.try_fast() {
            lock_contended(raw, handle, mode);
        }
        return Ticket::NONE;
    }
    if !raw.try_fast() {
        lock_contended(raw, handle, mode);
    }
    let counted = handle.count_held(mode);
    sampler::commit(countdown);
    if counted {
        Ticket::NONE
    } else {
        Ticket::COUNT_AT_RELEASE
    }
}

/// Counts an acquisition in `mode` whose lock is now held: at once when the
/// thread's table has its slot, else at its release.
#[inline(always)]
fn count_held(handle: LockHandle<'_>, mode: Mode) -> Ticket {
    if handle.count_held(mode) {
        Ticket::NONE
    } else if mode.shared() {
        // Other readers may hold it too, but a reader holding it does not
        // stop an allocator from taking it again to read.
        handle.count_unlocked(mode);
        Ticket::NONE
    } else {
        Ticket::COUNT_AT_RELEASE
    }
}

/// An unsampled acquisition whose first try failed: its wait is timed, so
/// that the lock's total wait is exact and only its split across stacks is
/// sampled. Two clock reads, only after a failed try. `raw` comes by value,
/// as the handle does (see [`LockHandle`]): a reference would put it on the
/// stack before the uncontended CAS.
#[cold]
#[inline(never)]
fn lock_contended(raw: impl RawAcquire, handle: LockHandle<'_>, mode: Mode) {
    // Not held yet: the counters' slot may be made now (it allocates).
    if !handle.ready() {
        handle.prepare(mode);
    }
    let start = clock::now();
    let end = raw.acquire_slow_timed();
    handle.contended(mode, clock::between(start, end));
}

#[cold]
#[inline(never)]
fn lock_expired(raw: impl RawAcquire, handle: LockHandle<'_>, mode: Mode, session: u32) -> Ticket {
    let held = if !mode.shared() && nothing_to_prepare(handle) {
        // Tried before the countdown's stores and the sampled path's
        // frames, which the lock's atomic instruction would otherwise wait
        // to drain, when the sampled path has nothing to allocate before
        // the lock is taken (a thread's first sampled acquisition in a
        // session has).
        let held = raw.try_fast();
        if !sampler::expired(session) {
            if !held {
                lock_contended(raw, handle, mode);
            }
            return count_held(handle, mode);
        }
        held
    } else {
        if !sampler::expired(session) {
            if !raw.try_fast() {
                lock_contended(raw, handle, mode);
            }
            return count_held(handle, mode);
        }
        prepare_sampled(handle, mode);
        raw.try_acquire()
    };
    // One call of each, whichever way the lock was tried: a sampled stack
    // includes the return address into this function, and two call sites
    // would make two stacks of one place (the same waiter listed twice
    // under blame, its wait split between them).
    if held {
        return sampled_held(handle, mode);
    }
    sampled_wait(raw, handle, mode, Attempt::Block).unwrap_or(Ticket::NONE)
}

/// Tries once; a failed attempt records nothing.
#[inline(always)]
pub(crate) fn try_lock(raw: impl RawAcquire, handle: LockHandle<'_>, mode: Mode) -> Option<Ticket> {
    lock_bounded(raw, handle, mode, Attempt::Once)
}

/// Acquires with a timeout; a timed-out attempt records nothing.
#[inline(always)]
pub(crate) fn lock_for(
    raw: impl RawAcquire,
    handle: LockHandle<'_>,
    mode: Mode,
    timeout: Duration,
) -> Option<Ticket> {
    lock_bounded(raw, handle, mode, Attempt::For(timeout))
}

/// [`try_lock`] and [`lock_for`]: an attempt that may fail, and then records
/// nothing and leaves the countdown as it was.
#[inline(always)]
fn lock_bounded<R: RawAcquire>(
    raw: R,
    handle: LockHandle<'_>,
    mode: Mode,
    attempt: Attempt,
) -> Option<Ticket> {
    let Some(session) = sampler::session() else {
        let acquired = match attempt {
            Attempt::For(timeout) => raw.try_acquire_for(timeout),
            Attempt::Once | Attempt::Block => raw.try_acquire(),
        };
        return acquired.then_some(Ticket::NONE);
    };
    // A timed attempt that waits is timed, as `lock_contended` does.
    let once = |raw: &R| match attempt {
        Attempt::For(timeout) => raw.try_acquire() || lock_for_contended(raw, handle, mode, timeout),
        Attempt::Once | Attempt::Block => raw.try_acquire(),
    };
    match sampler::peek(session) {
        Some(countdown) => {
            if !once(&raw) {
                return None;
            }
            sampler::commit(countdown);
        }
        None => {
            if sampler::expired(session) {
                return acquire_sampled(raw, handle, mode, attempt);
            }
            if !once(&raw) {
                return None;
            }
        }
    }
    Some(count_held(handle, mode))
}

/// [`lock_contended`] with a timeout: a timed-out attempt records nothing.
#[cold]
#[inline(never)]
fn lock_for_contended(raw: &impl RawAcquire, handle: LockHandle<'_>, mode: Mode, timeout: Duration) -> bool {
    if !handle.ready() {
        handle.prepare(mode);
    }
    let start = clock::now();
    if !raw.try_acquire_for(timeout) {
        return false;
    }
    let end = clock::now();
    handle.contended(mode, clock::between(start, end));
    true
}

/// Releases through `unlock`, recording the hold time if the acquisition was
/// sampled. The event is built after the lock is released, so recording never
/// lengthens the hold seen by other threads.
#[inline(always)]
pub(crate) fn release(ticket: Ticket, handle: LockHandle<'_>, mode: Mode, unlock: impl FnOnce()) {
    release_sending(ticket, handle, mode, unlock, send_release)
}

/// Sends a sampled release's event (value: the hold), returning whether it
/// was queued: [`recorder::send`] for the sync locks; the async ones send
/// their task's labels with it (`recorder::send_task`), which the sync path
/// must not carry through its stack (see [`recorder::send`]).
pub(crate) type SendRelease = fn(&LockSite, Mode, u64, u8, stack::Frames<'_>) -> bool;

fn send_release(site: &LockSite, mode: Mode, held: u64, shift: u8, frames: stack::Frames<'_>) -> bool {
    recorder::send(EventKind::Release, site, mode, held, shift, frames)
}

/// [`release`], the one release path of every lock type: `send` sends the
/// sampled release's event.
#[inline(always)]
pub(crate) fn release_sending(
    ticket: Ticket,
    handle: LockHandle<'_>,
    mode: Mode,
    unlock: impl FnOnce(),
    send: SendRelease,
) {
    match ticket.0 {
        None => unlock(),
        Some(_) => release_timed(ticket, handle, mode, unlock, send),
    }
}

/// Out of line so that a guard's drop stays small enough to inline.
#[cold]
#[inline(never)]
fn release_timed(
    ticket: Ticket,
    handle: LockHandle<'_>,
    mode: Mode,
    unlock: impl FnOnce(),
    send: SendRelease,
) {
    let site = handle.site();
    let Some((acquired_at, shift)) = ticket.sampled_at() else {
        // COUNT_AT_RELEASE: no lock held now, so the count may allocate.
        unlock();
        handle.count_unlocked(mode);
        return;
    };
    let released_at = clock::now();
    unlock();
    release_sampled(
        site,
        mode,
        Ticket::held_until(acquired_at, released_at),
        shift,
        ticket.key(),
        send,
    );
}

#[derive(Clone, Copy)]
enum Attempt {
    Block,
    Once,
    For(Duration),
}

/// A sampled acquisition. The lock is tried first, exactly as an unsampled
/// acquisition would, so that sampling never changes whether or how long this
/// acquisition waits (capturing first made a thread that would have re-taken
/// a free lock lose it to another, and sampled waits came out 40% long). The
/// stack is captured and the event sent during the wait, or while holding the
/// lock when there was none; the hold is timed from after that work, so it is
/// never counted as this thread's hold (other threads may wait for it).
#[cold]
#[inline(never)]
fn acquire_sampled(
    raw: impl RawAcquire,
    handle: LockHandle<'_>,
    mode: Mode,
    attempt: Attempt,
) -> Option<Ticket> {
    prepare_sampled(handle, mode);
    if raw.try_acquire() {
        return Some(sampled_held(handle, mode));
    }
    if let Attempt::Once = attempt {
        return None;
    }
    sampled_wait(raw, handle, mode, attempt)
}

/// Allocates what a sampled acquisition's count and event need, before its
/// lock is taken: a global allocator may take the very lock being sampled.
#[inline(always)]
fn prepare_sampled(handle: LockHandle<'_>, mode: Mode) {
    if !handle.ready() {
        handle.prepare(mode);
    }
    if !recorder::prepared() {
        guarded(recorder::prepare);
    }
}

/// Whether a sampled acquisition has nothing to allocate before its lock
/// is taken (see [`prepare_sampled`]): then [`lock_expired`] takes the lock
/// before it decides.
#[inline(always)]
fn nothing_to_prepare(handle: LockHandle<'_>) -> bool {
    handle.ready() && recorder::prepared()
}

/// A sampled acquisition whose lock was free and is now held: its stack and
/// event, taken while holding it.
#[cold]
#[inline(never)]
fn sampled_held(handle: LockHandle<'_>, mode: Mode) -> Ticket {
    // The weight this acquisition was drawn with (the sampling budget).
    let shift = sampler::current_shift();
    let mut stack = stack::StackBuf::new();
    let captured = guarded(|| stack::capture_into(recorder::max_frames(), &mut stack)).is_some();
    sampled_send(handle, mode, shift, captured, 0, &stack)
}

/// A sampled acquisition that found its lock taken: the stack is captured
/// and the event sent while it waits. `None` when `attempt` gave up.
#[cold]
#[inline(never)]
fn sampled_wait(
    raw: impl RawAcquire,
    handle: LockHandle<'_>,
    mode: Mode,
    attempt: Attempt,
) -> Option<Ticket> {
    // The weight this acquisition was drawn with (the sampling budget).
    let shift = sampler::current_shift();
    let mut stack = stack::StackBuf::new();
    // When this wait began, for the holders it is charged to: before the
    // capture, since the lock's holder made it wait from here.
    let began = clock::now();
    let captured = guarded(|| stack::capture_into(recorder::max_frames(), &mut stack)).is_some();
    // Timed from after the capture: the profiler's own work is not wait.
    let start = clock::now();
    let acquired = match attempt {
        Attempt::Once => false,
        Attempt::Block if captured => {
            let record = blame::WaitRecord::new(began, stack.frames().hash, shift);
            raw.acquire_recorded(&record);
            true
        }
        Attempt::Block => {
            raw.acquire();
            true
        }
        Attempt::For(t) if captured => {
            let record = blame::WaitRecord::new(began, stack.frames().hash, shift);
            raw.try_acquire_for_recorded(&record, t)
        }
        Attempt::For(t) => raw.try_acquire_for(t),
    };
    if !acquired {
        return None;
    }
    let waited = clock::between(start, clock::now()).max(1);
    handle.contended(mode, waited);
    Some(sampled_send(handle, mode, shift, captured, waited, &stack))
}

/// The end of a sampled acquisition, its lock held: counts it, sends its
/// event (`waited`: its wait; `shift`: its weight) and keeps its stack for its release.
#[inline(always)]
fn sampled_send(
    handle: LockHandle<'_>,
    mode: Mode,
    shift: u8,
    captured: bool,
    waited: u64,
    stack: &stack::StackBuf,
) -> Ticket {
    let counted = count_held(handle, mode);
    if !captured || counted == Ticket::COUNT_AT_RELEASE {
        // (The slot was prepared before the lock was tried, so the count is
        // deferred only on a thread being torn down.)
        return counted;
    }
    let sent = guarded(|| {
        recorder::send(
            EventKind::Acquire,
            handle.site(),
            mode,
            waited,
            shift,
            stack.frames(),
        )
    });
    // A release is recorded only if its acquire was; it reuses the frames
    // it shares with this stack (kept now, before the hold is timed).
    if sent != Some(true) {
        return Ticket::NONE;
    }
    // The hold is timed from after the slot is chosen, with the key it is
    // kept under: one visit to the kept stacks.
    let mut ticket = Ticket::NONE;
    let mut stamp = || {
        ticket = Ticket::sampled(clock::now(), shift);
        ticket.key()
    };
    stack::remember(stack, &mut stamp);
    if ticket == Ticket::NONE {
        ticket = Ticket::sampled(clock::now(), shift);
    }
    ticket
}

#[cold]
#[inline(never)]
fn release_sampled(site: &LockSite, mode: Mode, held: u64, shift: u8, key: u64, send: SendRelease) {
    let mut stack = stack::StackBuf::new();
    guarded(|| {
        // A guard dropped on another thread than its acquisition's (an
        // async guard) finds no frames to reuse and walks its whole stack.
        stack::capture_release(recorder::max_frames(), &mut stack, key);
        send(site, mode, held, shift, stack.frames())
    });
}

/// Panics caught inside profiler code on user threads.
pub(crate) static INTERNAL_PANICS: AtomicU64 = AtomicU64::new(0);

/// Runs profiler code on a user thread: never recursively, and never letting
/// a panic unwind into the user's lock operation.
#[inline(always)]
fn guarded<R>(f: impl FnOnce() -> R) -> Option<R> {
    sampler::enter(|| {
        match catch_unwind(AssertUnwindSafe(|| {
            #[cfg(feature = "fault-injection")]
            fault::maybe_panic();
            f()
        })) {
            Ok(r) => Some(r),
            Err(_) => {
                INTERNAL_PANICS.fetch_add(1, Relaxed);
                None
            }
        }
    })
    .flatten()
}

/// What a sampled event measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum EventKind {
    /// An acquisition; the value is its wait.
    Acquire,
    /// A release; the value is the hold time since its acquisition.
    Release,
    /// A release that kept a sampled waiter waiting; the value is the part
    /// of that wait inside this hold, the stack is the holder's, and
    /// [`Event::peer`] names the waiter's stack (see [`blame`]).
    Caused,
}

/// One sampled event, handed from a locking thread to the recorder: one
/// cache line, since the line is what a hand-off costs. What is sent only
/// once per thread or stack, or only by async locks or inside a traced
/// span, is boxed in `extra`.
#[derive(Debug)]
#[repr(align(64))]
pub(crate) struct Event {
    pub(crate) kind: EventKind,
    pub(crate) mode: Mode,
    pub(crate) site: LockSite,
    pub(crate) value_ticks: u64,
    /// The sampling budget's shift: this event stands for `2^shift` events
    /// sampled at `capture_pct`.
    pub(crate) shift: u8,
    /// For [`EventKind::Caused`], the waiter's stack ([`blame::peer_id`]);
    /// else 0.
    pub(crate) peer: u32,
    /// The thread's id; its labels come in `extra` the first time.
    pub(crate) thread: u64,
    /// The stack's hash; its frames come in `extra` the first time.
    pub(crate) stack: u64,
    pub(crate) extra: Option<Box<EventExtra>>,
}

/// The rarely sent parts of an [`Event`].
#[derive(Debug, Default)]
pub(crate) struct EventExtra {
    /// The thread's labels, sent with its first event.
    pub(crate) thread: Option<std::sync::Arc<labels::ThreadMeta>>,
    /// The stack's frames, sent with the first event of a thread that has it.
    pub(crate) stack: Option<stack::Stack>,
    /// The same, copied into a buffer allocated before the user's lock was
    /// taken (see `recorder::prepare`); the recorder turns it into a
    /// [`stack::Stack`].
    pub(crate) buffered: Option<stack::BufferedStack>,
    /// The async task, for acquisitions by async locks.
    pub(crate) task: Option<labels::TaskLabels>,
    /// The span the event happened in, when a tracer integration knows it.
    pub(crate) span: Option<span::SpanLabels>,
}

#[cfg(test)]
#[test]
fn an_event_is_one_cache_line() {
    assert_eq!(std::mem::size_of::<Event>(), 64);
}
