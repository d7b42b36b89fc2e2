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

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::{guarded, recorder, sampler, stack, Mode};
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
