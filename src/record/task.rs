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

/// How many can hold the lock at once, which decides how an acquisition
/// is counted in the lock's exact totals.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Holders {
    /// A mutex or a write lock: a plain count under the lock.
    One,
    /// A semaphore: an atomic count.
    Many,
}

#[inline(always)]
fn count(handle: &LockHandle, mode: Mode, _holders: Holders) {
    // Each thread counts in its own table, so several holders at once
    // (a semaphore) need nothing more; no sync lock is held here.
    handle.count_shared(mode);
}

/// Acquires `permits` of `sem`, recording as the sampler decides. Not
/// generic: every async lock type awaits this one future.
pub(crate) async fn acquire(
    sem: &Semaphore,
    permits: u32,
    handle: &LockHandle,
    mode: Mode,
    holders: Holders,
) -> Result<Ticket, AcquireError> {
    // This body runs at the first poll, so the decision (and, when
    // contended, the wait) starts when the task starts waiting.
    let Some(session) = sampler::session() else {
        sem.acquire_many(permits).await?.forget();
        return Ok(Ticket::NONE);
    };
    if sampler::tick(session) {
        return acquire_sampled(sem, permits, handle, mode, holders).await;
    }
    // No clock read and no allocation here: this path runs on every
    // acquisition while a profiler is running.
    if let Ok(permit) = sem.try_acquire_many(permits) {
        permit.forget();
        count(handle, mode, holders);
        return Ok(Ticket::NONE);
    }
    // Contended: the wait goes into the lock's exact totals (two clock
    // reads are negligible next to a wait).
    let start = clock::now();
    sem.acquire_many(permits).await?.forget();
    let waited = clock::between(start, clock::now());
    count(handle, mode, holders);
    handle.contended(mode, waited);
    Ok(Ticket::NONE)
}

/// [`acquire`] for a semaphore that is never closed: a lock.
pub(crate) async fn lock(sem: &Semaphore, permits: u32, handle: &LockHandle, mode: Mode) -> Ticket {
    match acquire(sem, permits, handle, mode, Holders::One).await {
        Ok(ticket) => ticket,
        // Unreachable: a lock's semaphore is never closed. Waiting
        // forever is what tokio's own lock would do, and never panics.
        Err(_) => std::future::pending().await,
    }
}

/// A sampled acquisition: the stack is captured at the first poll, in
/// the poll of the user's async fn, after the permits are tried exactly
/// as an unsampled acquisition tries them (as the sync locks do, so that
/// sampling never changes whether this acquisition waits).
async fn acquire_sampled(
    sem: &Semaphore,
    permits: u32,
    handle: &LockHandle,
    mode: Mode,
    holders: Holders,
) -> Result<Ticket, AcquireError> {
    // At the first poll, on the thread that drew the sample.
    let shift = sampler::current_shift();
    let (stack, waited) = match sem.try_acquire_many(permits) {
        Ok(permit) => {
            permit.forget();
            (capture_stack(), 0)
        }
        Err(_) => {
            let start = clock::now();
            let stack = capture_stack();
            sem.acquire_many(permits).await?.forget();
            (stack, clock::between(start, clock::now()).max(1))
        }
    };
    Ok(acquired_sampled(handle, mode, holders, waited, shift, stack))
}

/// Tries once; a failed attempt records nothing.
#[inline]
pub(crate) fn try_acquire(
    sem: &Semaphore,
    permits: u32,
    handle: &LockHandle,
    mode: Mode,
    holders: Holders,
) -> Result<Ticket, TryAcquireError> {
    let Some(session) = sampler::session() else {
        sem.try_acquire_many(permits)?.forget();
        return Ok(Ticket::NONE);
    };
    if sampler::tick(session) {
        return try_acquire_sampled(sem, permits, handle, mode, holders);
    }
    sem.try_acquire_many(permits)?.forget();
    count(handle, mode, holders);
    Ok(Ticket::NONE)
}

#[cold]
#[inline(never)]
fn try_acquire_sampled(
    sem: &Semaphore,
    permits: u32,
    handle: &LockHandle,
    mode: Mode,
    holders: Holders,
) -> Result<Ticket, TryAcquireError> {
    let shift = sampler::current_shift();
    sem.try_acquire_many(permits)?.forget();
    Ok(acquired_sampled(handle, mode, holders, 0, shift, capture_stack()))
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
    handle: &LockHandle,
    mode: Mode,
    holders: Holders,
    waited: u64,
    shift: u8,
    stack: Option<stack::Stack>,
) -> Ticket {
    let site = handle.site();
    let acquired_at = clock::now();
    count(handle, mode, holders);
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
/// was sampled. The guard carries the acquisition time, so this is right
/// on whichever thread and in whichever task the guard is dropped.
#[inline(always)]
pub(crate) fn release(ticket: Ticket, handle: &LockHandle, mode: Mode, unlock: impl FnOnce()) {
    let site = handle.site();
    match ticket.sampled_at() {
        None => unlock(),
        Some((acquired_at, shift)) => {
            let released_at = clock::now();
            unlock();
            release_sampled(site, mode, Ticket::held_until(acquired_at, released_at), shift);
        }
    }
}

#[cold]
#[inline(never)]
fn release_sampled(site: &LockSite, mode: Mode, held: u64, shift: u8) {
    guarded(|| {
        let mut stack = stack::StackBuf::new();
        stack::capture_into(recorder::max_frames(), &mut stack);
        recorder::send_task(
            EventKind::Release,
            site,
            mode,
            held,
            shift,
            stack.frames(),
            TaskLabels::current(),
        )
    });
}
