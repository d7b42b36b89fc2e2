//! Recording for async locks (feature `tokio`): acquisition and release
//! through a tokio semaphore.
//!
//! An async acquisition is decided at the first poll of the lock future: the
//! body of [`acquire`] runs then, so the per-thread countdown is ticked, and
//! for a sampled acquisition the stack captured, in the user's poll of their
//! async fn. The wait is measured from that first poll to the poll that gets
//! the permits; the acquisition time goes into the guard's [`Ticket`], so the
//! hold is measured across `.await`s and across threads. A future dropped
//! before it acquired never reaches the recording code.

use tokio::sync::{AcquireError, Semaphore, TryAcquireError};

use super::labels::TaskLabels;
use super::{clock, guarded, recorder, sampler, stack, EventKind, LockHandle, Mode, Ticket};
use crate::site::LockSite;

#[inline(always)]
fn count(handle: LockHandle<'_>, mode: Mode) {
    // Each thread counts in its own table, so several holders at once
    // (a semaphore, readers) need nothing more; no sync lock is held here.
    handle.count_shared(mode);
}

/// An acquisition after its first try, which [`acquire`] and
/// [`try_acquire`] share: the sampling decision is made and the permits tried
/// once, exactly alike for sampled and unsampled acquisitions (as the sync
/// locks do, so that sampling never changes whether an acquisition waits).
enum FirstTry {
    /// No profiler runs: nothing tried, nothing to record.
    Off,
    /// The permits are held, and the acquisition booked.
    Acquired(Ticket),
    /// The permits are not free (`error` says why); `sampled` holds the
    /// weight of a sampled acquisition.
    Busy {
        error: TryAcquireError,
        sampled: Option<u8>,
    },
}

#[inline(always)]
fn first_try(sem: &Semaphore, permits: u32, handle: LockHandle<'_>, mode: Mode) -> FirstTry {
    let Some(session) = sampler::session() else {
        return FirstTry::Off;
    };
    if sampler::tick(session) {
        return first_try_sampled(sem, permits, handle, mode);
    }
    // No clock read and no allocation here: this path runs on every
    // acquisition while a profiler is running.
    match sem.try_acquire_many(permits) {
        Ok(permit) => {
            permit.forget();
            count(handle, mode);
            FirstTry::Acquired(Ticket::NONE)
        }
        Err(error) => FirstTry::Busy { error, sampled: None },
    }
}

/// [`first_try`] of a sampled acquisition: at the first poll, in the poll of
/// the user's async fn, on the thread that drew the sample.
#[cold]
#[inline(never)]
fn first_try_sampled(sem: &Semaphore, permits: u32, handle: LockHandle<'_>, mode: Mode) -> FirstTry {
    let shift = sampler::current_shift();
    match sem.try_acquire_many(permits) {
        Ok(permit) => {
            permit.forget();
            FirstTry::Acquired(acquired_sampled(handle, mode, 0, shift, capture_stack()))
        }
        Err(error) => FirstTry::Busy {
            error,
            sampled: Some(shift),
        },
    }
}

/// Acquires `permits` of `sem`, recording as the sampler decides. Not
/// generic: every async lock type awaits this one future.
pub(crate) async fn acquire(
    sem: &Semaphore,
    permits: u32,
    handle: LockHandle<'_>,
    mode: Mode,
) -> Result<Ticket, AcquireError> {
    // This body runs at the first poll, so the decision (and, when
    // contended, the wait) starts when the task starts waiting.
    match first_try(sem, permits, handle, mode) {
        FirstTry::Off => {
            sem.acquire_many(permits).await?.forget();
            Ok(Ticket::NONE)
        }
        FirstTry::Acquired(ticket) => Ok(ticket),
        FirstTry::Busy { sampled: None, .. } => {
            // Contended: the wait goes into the lock's exact totals (two
            // clock reads are negligible next to a wait).
            let start = clock::now();
            sem.acquire_many(permits).await?.forget();
            let waited = clock::between(start, clock::now());
            count(handle, mode);
            handle.contended(mode, waited);
            Ok(Ticket::NONE)
        }
        FirstTry::Busy {
            sampled: Some(shift), ..
        } => {
            let start = clock::now();
            let stack = capture_stack();
            sem.acquire_many(permits).await?.forget();
            let waited = clock::between(start, clock::now()).max(1);
            Ok(acquired_sampled(handle, mode, waited, shift, stack))
        }
    }
}

/// [`acquire`] for a semaphore that is never closed: a lock.
pub(crate) async fn lock(sem: &Semaphore, permits: u32, handle: LockHandle<'_>, mode: Mode) -> Ticket {
    match acquire(sem, permits, handle, mode).await {
        Ok(ticket) => ticket,
        // Unreachable: a lock's semaphore is never closed. Waiting
        // forever is what tokio's own lock would do, and never panics.
        Err(_) => std::future::pending().await,
    }
}

/// Tries once; a failed attempt records nothing.
#[inline]
pub(crate) fn try_acquire(
    sem: &Semaphore,
    permits: u32,
    handle: LockHandle<'_>,
    mode: Mode,
) -> Result<Ticket, TryAcquireError> {
    match first_try(sem, permits, handle, mode) {
        FirstTry::Off => {
            sem.try_acquire_many(permits)?.forget();
            Ok(Ticket::NONE)
        }
        FirstTry::Acquired(ticket) => Ok(ticket),
        FirstTry::Busy { error, .. } => Err(error),
    }
}

#[cold]
#[inline(never)]
fn capture_stack() -> Option<stack::Stack> {
    // Owned: the stack is kept across the await for the lock.
    guarded(|| stack::capture(recorder::max_frames()))
}

/// Books a sampled acquisition that holds its permits now.
#[cold]
#[inline(never)]
fn acquired_sampled(
    handle: LockHandle<'_>,
    mode: Mode,
    waited: u64,
    shift: u8,
    stack: Option<stack::Stack>,
) -> Ticket {
    let site = handle.site();
    let acquired_at = clock::now();
    count(handle, mode);
    if waited > 0 {
        handle.contended(mode, waited);
    }
    let Some(stack) = stack else {
        return Ticket::NONE;
    };
    let sent = guarded(|| {
        recorder::send_task(
            EventKind::Acquire,
            site,
            mode,
            waited,
            shift,
            stack.frames(),
            TaskLabels::current(),
        )
    });
    // A release is recorded only if its acquire was.
    match sent {
        Some(true) => Ticket::sampled(acquired_at, shift),
        _ => Ticket::NONE,
    }
}

/// Releases through `unlock`, recording the hold time if the acquisition
/// was sampled: the sync locks' release path, sending the task's labels with
/// the event. The guard carries the acquisition time, so this is right on
/// whichever thread and in whichever task the guard is dropped.
#[inline(always)]
pub(crate) fn release(ticket: Ticket, handle: LockHandle<'_>, mode: Mode, unlock: impl FnOnce()) {
    super::release_sending(ticket, handle, mode, unlock, send_release)
}

fn send_release(site: &LockSite, mode: Mode, held: u64, shift: u8, frames: stack::Frames<'_>) -> bool {
    recorder::send_task(
        EventKind::Release,
        site,
        mode,
        held,
        shift,
        frames,
        TaskLabels::current(),
    )
}
