//! On-demand profiles (feature `http`), on the profiler thread: the
//! profile of the next N seconds (a window) and the profile of everything
//! since the start.
//!
//! The profiler thread takes a sub-period of the session whenever a window
//! opens or closes, and at every periodic flush; each sub-period goes to
//! the periodic profile being built (so a periodic file is the sum of its
//! sub-periods, and has exactly the counts it would have had without the
//! endpoint), to the cumulative profile, and to every open window. The
//! counts are read from the threads' tables at each cut, so a window's are
//! those made between its two cuts, exactly.

use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use crate::record::session::{Period, PeriodSum};
use crate::serve::{Ask, Reply, Server};

/// The endpoint and the profiles it waits for.
#[derive(Debug)]
pub(super) struct OnDemand {
    // Dropped in this order: open windows answer that the profiler stopped,
    // then the server stops.
    windows: Vec<Window>,
    asks: Receiver<Ask>,
    /// The periodic profile so far, once cut.
    periodic: Option<PeriodSum>,
    /// Everything since the session opened.
    since_start: Option<PeriodSum>,
    next_id: u64,
    server: Server,
}

#[derive(Debug)]
struct Window {
    id: u64,
    length: Duration,
    ends: Instant,
    sum: Option<PeriodSum>,
    reply: Reply,
}

/// A window that ended, for the profiler thread to encode and answer.
#[derive(Debug)]
pub(super) struct Ended {
    pub(super) id: u64,
    pub(super) length: Duration,
    pub(super) period: Option<Period>,
    pub(super) reply: Reply,
}

impl OnDemand {
    pub(super) fn new(server: Server, asks: Receiver<Ask>) -> OnDemand {
        OnDemand {
            windows: Vec::new(),
            asks,
            periodic: None,
            since_start: None,
            next_id: 1,
            server,
        }
    }

    /// Where the server asks.
    pub(super) fn asks(&self) -> &Receiver<Ask> {
        &self.asks
    }

    /// Adds a sub-period to every profile being built.
    pub(super) fn add(&mut self, period: Period) {
        self.add_to_others(&period);
        match &mut self.periodic {
            Some(sum) => sum.add(&period),
            None => self.periodic = Some(PeriodSum::new(period)),
        }
    }

    /// Ends the periodic profile with its last sub-period: the whole of it.
    pub(super) fn end_periodic(&mut self, last: Period) -> Period {
        self.add_to_others(&last);
        match self.periodic.take() {
            Some(mut sum) => {
                sum.add(&last);
                sum.into_period()
            }
            None => last,
        }
    }

    fn add_to_others(&mut self, period: &Period) {
        for sum in self
            .windows
            .iter_mut()
            .map(|w| &mut w.sum)
            .chain(std::iter::once(&mut self.since_start))
        {
            match sum {
                Some(sum) => sum.add(period),
                None => *sum = Some(PeriodSum::new(period.clone())),
            }
        }
    }

    /// Opens a window of `length` from now, once the sub-period before it
    /// was added; returns its id.
    pub(super) fn open(&mut self, length: Duration, reply: Reply) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.windows.push(Window {
            id,
            length,
            ends: Instant::now() + length,
            sum: None,
            reply,
        });
        id
    }

    /// When the next window ends.
    pub(super) fn next_end(&self) -> Option<Instant> {
        self.windows.iter().map(|w| w.ends).min()
    }

    /// The windows ended by `now`, once the sub-period that ends them was
    /// added.
    pub(super) fn take_ended(&mut self, now: Instant) -> Vec<Ended> {
        let (ended, open): (Vec<Window>, Vec<Window>) = std::mem::take(&mut self.windows)
            .into_iter()
            .partition(|w| w.ends <= now);
        self.windows = open;
        ended
            .into_iter()
            .map(|w| Ended {
                id: w.id,
                length: w.length,
                period: w.sum.map(PeriodSum::into_period),
                reply: w.reply,
            })
            .collect()
    }

    /// Everything since the start, up to the last sub-period added.
    pub(super) fn since_start(&self) -> Option<Period> {
        self.since_start.as_ref().map(|sum| sum.period().clone())
    }

    /// The address the endpoint listens on.
    pub(super) fn addr(&self) -> std::net::SocketAddr {
        self.server.addr()
    }
}

impl Drop for OnDemand {
    fn drop(&mut self) {
        // Asks not read yet answer that the profiler stopped before the
        // server stops, whose threads write the answers.
        self.windows.clear();
        while let Ok(ask) = self.asks.try_recv() {
            drop(ask);
        }
    }
}
