//! Caused wait: the part of each waiter's wait that fell inside a holder's
//! hold, charged to the holder's stack ("who made me wait").
//!
//! A sampled acquisition that has to park leaves a [`WaitRecord`] on its own
//! stack, reachable from the parking lot's queue while it is parked. Every
//! unlock that finds such a waiter parked (the raw lock's slow path) charges
//! it `released_at - charged_until` and moves `charged_until` on; every
//! acquisition made while one is parked moves it on to the acquisition (the
//! time the lock was free is no one's doing). So a wait is split among the
//! holders it sat behind, each charged exactly the part that fell inside its
//! own hold: with a queue of waiters, a slow holder is charged for its hold,
//! not the next one in the hand-off chain. The holder then records the
//! charges with its own stack ([`charge_holder`]).
//!
//! Only parked waits are charged: the first microseconds a waiter spends
//! spinning, and the time between its wake-up and its acquisition, are in
//! its wait but in no holder's charge.
//!
//! Read-write and re-entrant locks run on parking_lot's raw locks, whose
//! queues are their own. Their sampled waiters put their records in a small
//! process-wide list instead ([`Watched`]), and the lock carries a count of
//! them that every release looks at before unlocking: a release that finds
//! one charges the listed waiters as a mutex unlock does, before the lock is
//! let go (so no waiter can have been woken and left the list in between),
//! and an acquisition after a wait moves their records on. Several readers
//! release one after another: each is charged the part of a writer's wait
//! since the release before it, so a writer waiting behind readers is
//! charged to the readers that held it, and readers queued behind a waiting
//! writer are charged to the readers before it and then to its hold.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::{clock, guarded, recorder, sampler, stack, Mode};
use crate::site::LockSite;

/// Records `charges`, made by this thread's unlock of the lock at `site`,
/// with this thread's stack: one [`EventKind::Caused`](super::EventKind)
/// event per waiter. Runs after the lock is released, and only when a
/// sampled waiter was parked.
///
/// A thread that never sampled anything allocates its stack buffers here
/// (the first time only), possibly while holding another lock.
#[cold]
#[inline(never)]
pub(crate) fn charge_holder(site: &LockSite, mode: Mode, charges: &Charges) {
    if sampler::session().is_none() {
        return;
    }
    guarded(|| {
        recorder::prepare();
        let mut frames = stack::StackBuf::new();
        stack::capture_into(recorder::max_frames(), &mut frames);
        for c in charges.as_slice() {
            recorder::send_caused(site, mode, c.ticks, c.shift, c.peer, frames.frames());
        }
    });
}

/// Carried by a lock whose raw lock keeps its queue to itself: how many of
/// its sampled waiters are in the [`WATCHED`] list. Releases read it (one
/// load of the lock's own memory) and go to [`release_watched`] when it is
/// not 0.
#[derive(Debug, Default)]
pub(crate) struct Watched {
    waiters: AtomicU32,
}

impl Watched {
    pub(crate) const fn new() -> Watched {
        Watched {
            waiters: AtomicU32::new(0),
        }
    }

    /// Whether a sampled waiter of this lock is listed.
    #[inline(always)]
    pub(crate) fn any(&self) -> bool {
        self.waiters.load(Relaxed) != 0
    }

    /// The [`clock::now`] of an acquisition that waited, just made; the
    /// listed waiters' records are moved on to it, if any (the time before,
    /// when the lock was free, is no holder's doing).
    #[inline(always)]
    pub(crate) fn acquired_after_wait(&self) -> u64 {
        let at = clock::now();
        if self.any() {
            hold_starts_watched(self, at);
        }
        at
    }

    fn key(&self) -> usize {
        self as *const Watched as usize
    }
}

/// Sampled waiters listed at once, over all watched locks; a waiter that
/// finds the list full waits uncharged. A fixed array: listing allocates
/// nothing (the waiter may hold other locks, which a global allocator may
/// take).
const WATCHED_CAP: usize = 64;

/// The waiters of watched locks: (the lock's [`Watched`], the waiter's
/// [`WaitRecord`]) as addresses, 0 for a free entry. A record is listed only
/// while its waiter waits, and read only with this list locked.
static WATCHED: parking_lot::Mutex<[(usize, usize); WATCHED_CAP]> =
    parking_lot::const_mutex([(0, 0); WATCHED_CAP]);

/// How long a sampled waiter tries to list itself. The list is locked only
/// for a few loads and stores; a lock that stays taken is one a forked child
/// inherited from a thread that is gone, and then the wait goes uncharged.
const LIST_TIMEOUT: Duration = Duration::from_millis(1);

/// Waits through `acquire` with `record` listed for `watched`'s releases to
/// charge, and unlisted once `acquire` has returned (with the lock, or
/// timed out).
pub(crate) fn wait_watched<R>(watched: &Watched, record: &WaitRecord, acquire: impl FnOnce() -> R) -> R {
    let key = watched.key();
    let entry = WATCHED.try_lock_for(LIST_TIMEOUT).and_then(|mut list| {
        let i = list.iter().position(|e| e.0 == 0)?;
        list[i] = (key, record as *const WaitRecord as usize);
        watched.waiters.fetch_add(1, Relaxed);
        Some(i)
    });
    let acquired = acquire();
    let Some(i) = entry else {
        return acquired;
    };
    let at = clock::now();
    // Blocking: the entry must go before the record does. The list was
    // locked moments ago by this thread, so it is not a lost lock.
    let mut list = WATCHED.lock();
    list[i] = (0, 0);
    watched.waiters.fetch_sub(1, Relaxed);
    skip_listed(&list[..], key, at);
    acquired
}

/// A hold of `watched`'s lock began at `at` after a wait (see
/// [`WaitRecord::skip_to`]).
#[cold]
#[inline(never)]
fn hold_starts_watched(watched: &Watched, at: u64) {
    if let Some(list) = WATCHED.try_lock_for(LIST_TIMEOUT) {
        skip_listed(&list[..], watched.key(), at);
    }
}

fn skip_listed(list: &[(usize, usize)], key: usize, at: u64) {
    for &(_, record) in list.iter().filter(|e| e.0 == key) {
        // SAFETY: a listed record lives until its waiter unlists it, which
        // needs the list's lock, held by the caller.
        unsafe { &*(record as *const WaitRecord) }.skip_to(at);
    }
}

/// Releases a watched lock through `unlock`, charging its listed waiters
/// with the part of their wait since they were last charged: charged before
/// the unlock, so that a waiter it wakes cannot leave the list first, and
/// recorded with this thread's stack after it ([`charge_holder`]).
#[cold]
#[inline(never)]
pub(crate) fn release_watched(watched: &Watched, site: &LockSite, mode: Mode, unlock: impl FnOnce()) {
    let mut charges = Charges::new();
    if let Some(list) = WATCHED.try_lock_for(LIST_TIMEOUT) {
        let released_at = clock::now();
        for &(_, record) in list.iter().filter(|e| e.0 == watched.key()) {
            // SAFETY: as in `skip_listed`: listed, and the list is locked.
            charges.push(Charge::since(
                unsafe { &*(record as *const WaitRecord) },
                released_at,
            ));
        }
    }
    unlock();
    if !charges.is_empty() {
        charge_holder(site, mode, &charges);
    }
}

/// What a parked, sampled waiter leaves on its stack for the holders it waits
/// behind.
#[derive(Debug)]
pub(crate) struct WaitRecord {
    /// Ticks ([`clock::now`](super::clock::now)) up to which this wait has
    /// been charged; starts at the wait's start.
    charged_until: AtomicU64,
    /// The waiter's stack, as [`peer_id`] names it.
    peer: u32,
    /// The waiter's sampling shift (its weight is `2^shift` samples).
    shift: u8,
}

impl WaitRecord {
    pub(crate) fn new(started_at: u64, waiter_stack_hash: u64, shift: u8) -> WaitRecord {
        WaitRecord {
            charged_until: AtomicU64::new(started_at),
            peer: peer_id(waiter_stack_hash),
            shift,
        }
    }
}

impl WaitRecord {
    /// A hold began at `at`: the wait before it is charged to no one.
    pub(crate) fn skip_to(&self, at: u64) {
        self.charged_until.fetch_max(at, Relaxed);
    }
}

/// The 32-bit name of a waiter's stack in caused-wait events: the top half of
/// its hash, never 0 (0 is "no waiter stack").
pub(crate) fn peer_id(stack_hash: u64) -> u32 {
    ((stack_hash >> 32) as u32).max(1)
}

/// One waiter's charge to one holder.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Charge {
    pub(crate) ticks: u64,
    /// The waiter's stack ([`peer_id`]); 0 when unknown (overflow).
    pub(crate) peer: u32,
    pub(crate) shift: u8,
}

impl Charge {
    /// The part of `record`'s wait from where it was last charged to
    /// `released_at`, which it is now charged up to.
    pub(crate) fn since(record: &WaitRecord, released_at: u64) -> Charge {
        let from = record.charged_until.load(Relaxed);
        record.charged_until.store(from.max(released_at), Relaxed);
        Charge {
            ticks: released_at.saturating_sub(from),
            peer: record.peer,
            shift: record.shift,
        }
    }
}

/// The charges of one unlock, without allocating (the unlocking thread may
/// hold other locks): the first [`Charges::CAP`] waiters apart, the rest
/// summed as one charge of unknown waiter stack.
#[derive(Debug)]
pub(crate) struct Charges {
    list: [Charge; Charges::CAP],
    len: usize,
}

impl Charges {
    pub(crate) const CAP: usize = 16;

    pub(crate) fn new() -> Charges {
        Charges {
            list: [Charge::default(); Charges::CAP],
            len: 0,
        }
    }

    pub(crate) fn push(&mut self, charge: Charge) {
        if charge.ticks == 0 {
            return;
        }
        if self.len < Self::CAP - 1 {
            self.list[self.len] = charge;
            self.len += 1;
            return;
        }
        // The last entry gathers the rest, in unit weight.
        let last = &mut self.list[Self::CAP - 1];
        let weighted = charge.ticks.saturating_mul(1u64 << charge.shift.min(63));
        last.ticks = last.ticks.saturating_add(weighted);
        last.peer = 0;
        last.shift = 0;
        self.len = Self::CAP;
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn as_slice(&self) -> &[Charge] {
        &self.list[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_is_split_among_the_holds_it_sat_behind() {
        let record = WaitRecord::new(100, 0xabcd_0000_0000, 2);
        let first = Charge::since(&record, 150);
        let second = Charge::since(&record, 400);
        assert_eq!((first.ticks, second.ticks), (50, 250));
        assert_eq!(first.peer, 0xabcd);
        assert_eq!(first.shift, 2);
        // A clock read before the record's last charge charges nothing.
        assert_eq!(Charge::since(&record, 300).ticks, 0);
    }

    #[test]
    fn charges_beyond_the_cap_are_summed_at_unit_weight() {
        let mut charges = Charges::new();
        for i in 0..Charges::CAP as u64 + 4 {
            charges.push(Charge {
                ticks: 10,
                peer: i as u32 + 1,
                shift: 1,
            });
        }
        let list = charges.as_slice();
        assert_eq!(list.len(), Charges::CAP);
        assert!(list[..Charges::CAP - 1]
            .iter()
            .all(|c| c.ticks == 10 && c.shift == 1));
        assert_eq!(
            list[Charges::CAP - 1],
            Charge {
                ticks: 5 * 20,
                peer: 0,
                shift: 0
            }
        );
        charges.push(Charge {
            ticks: 0,
            peer: 9,
            shift: 0,
        });
        assert_eq!(charges.as_slice().len(), Charges::CAP);
    }
}
