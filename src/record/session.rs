//! A profiling session as the profiler drives it: claim, open from the
//! settings, poll the threads' queues, take one period at a time, close.
//!
//! This file is the only writer of the recording core's process-wide state:
//! the session number that the locking path reads, the sampling rate and
//! budget, the clock and unwinder in use, the recorder's sink, and the state
//! a forked child must renew. Each is set by a function of its own module,
//! called from here in the order below, so that no caller has to know it.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::*};
use std::time::{Duration, Instant, SystemTime};

use super::recorder::{self, Aggregate, Recorder, SampleKey};
use super::stats::{self, Totals};
use super::{clock, sampler, span, stack, Mode, INTERNAL_PANICS};
use crate::site::SiteKey;
use crate::util::fxhash::FxHashMap;

pub(crate) use super::sampler::mark_profiler_thread;
pub(crate) use super::stack::Unwinder;

/// Set while a session is claimed: only one runs at a time.
static CLAIMED: AtomicBool = AtomicBool::new(false);
static NEXT_ID: AtomicU32 = AtomicU32::new(1);
/// The process that last opened a session: another one is a forked child.
static OPENED_BY: AtomicU32 = AtomicU32::new(0);

/// What a session records.
#[derive(Debug, Clone)]
pub(crate) struct SessionSettings {
    /// Share of acquisitions sampled, in percent; 0 records nothing.
    pub(crate) capture_pct: f64,
    /// Sampled acquisitions per second of a thread's CPU time; 0 for no
    /// budget.
    pub(crate) max_samples_per_sec: u64,
    pub(crate) max_frames: usize,
    /// Events each thread's queue holds.
    pub(crate) queue_capacity: usize,
    pub(crate) unwinder: Unwinder,
}

/// The right to open the process's one session; released when dropped (or
/// when the session it opened is).
#[derive(Debug)]
pub(crate) struct Claim(());

impl Claim {
    /// `None` while another session is claimed.
    pub(crate) fn take() -> Option<Claim> {
        CLAIMED
            .compare_exchange(false, true, AcqRel, Acquire)
            .is_ok()
            // Not `then_some`: a claim made and dropped would release the
            // one that is held.
            .then(|| Claim(()))
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        CLAIMED.store(false, Release);
    }
}

/// The reading end of a session, for the thread that polls its queues and
/// takes its periods. Dropped without [`close`](Self::close), it stops
/// sampling and discards what was queued.
#[derive(Debug)]
pub(crate) struct Session {
    events: recorder::Events,
    recorder: Recorder,
    /// The clock at the session's start: ticks become nanoseconds at each
    /// period at the rate measured since.
    clock_start: clock::Calibration,
    period_start: (SystemTime, Instant),
    dropped_seen: u64,
    panics_seen: u64,
    max_frames: usize,
    unwinder: Unwinder,
    closed: bool,
    _claim: Claim,
}

/// Starts sampling for an opened session: kept apart from the [`Session`],
/// which moves to the thread that reads it, so that sampling starts only once
/// that thread runs.
#[derive(Debug)]
#[must_use = "nothing is sampled until `start` is called"]
pub(crate) struct Sampling {
    id: u32,
    capture_pct: f64,
}

impl Sampling {
    pub(crate) fn start(self) {
        // Capture 0 records nothing, exact totals included, so its locks
        // take the path of no profiler at all: no session is published.
        if self.capture_pct > 0.0 {
            sampler::SESSION.store(self.id, Release);
        }
    }
}

impl Session {
    /// Sets up the recording core for a new session; nothing is sampled
    /// until [`Sampling::start`].
    pub(crate) fn open(claim: Claim, settings: &SessionSettings) -> (Session, Sampling) {
        install_fork_handler();
        let pid = std::process::id();
        let last_pid = OPENED_BY.swap(pid, Relaxed);
        if last_pid != 0 && last_pid != pid {
            // A forked child: locks that a thread of the parent held at the
            // fork stay locked here for good.
            recorder::after_fork();
            stats::after_fork();
            span::after_fork();
        }
        let unwinder = stack::select(settings.unwinder);
        clock::select();
        let id = NEXT_ID.fetch_add(1, Relaxed).max(1);
        sampler::configure(
            settings.capture_pct,
            settings.max_samples_per_sec,
            clock::ticks_per_sec(),
        );
        stats::reset_baseline();
        // Requests that ended while no profiler ran are no one's.
        let _ = span::take_endpoint_counts();
        let events = recorder::open(id, settings.queue_capacity, settings.max_frames);
        let session = Session {
            events,
            recorder: Recorder::default(),
            clock_start: clock::Calibration::now(),
            period_start: (SystemTime::now(), Instant::now()),
            dropped_seen: recorder::DROPPED.load(Relaxed),
            panics_seen: INTERNAL_PANICS.load(Relaxed),
            max_frames: settings.max_frames,
            unwinder,
            closed: false,
            _claim: claim,
        };
        let sampling = Sampling {
            id,
            capture_pct: settings.capture_pct,
        };
        (session, sampling)
    }

    /// The unwinder in use: never [`Unwinder::Auto`].
    pub(crate) fn unwinder(&self) -> Unwinder {
        self.unwinder
    }

    /// Records the events queued now; those that arrive meanwhile wait for
    /// the next call. Returns how many there were.
    pub(crate) fn poll(&mut self) -> usize {
        self.events.poll(&mut self.recorder)
    }

    /// Ends the current period and returns what it recorded; the next one
    /// starts now.
    pub(crate) fn take_period(&mut self) -> Period {
        let ns_per_tick = self.clock_start.ns_per_tick(&clock::Calibration::now());
        let taken = self.recorder.take(ns_per_tick);
        let totals = stats::take_deltas(ns_per_tick);
        let dropped_now = recorder::DROPPED.load(Relaxed);
        let dropped = dropped_now.wrapping_sub(std::mem::replace(&mut self.dropped_seen, dropped_now));
        let panics_now = INTERNAL_PANICS.load(Relaxed);
        let (start, start_mono) = self.period_start;
        let end = SystemTime::now();
        let duration = start_mono.elapsed();
        self.period_start = (end, Instant::now());
        Period {
            start,
            end,
            duration,
            samples: taken.samples,
            totals,
            recorded: taken.recorded,
            // Events whose stack the recorder had just forgotten are lost too.
            dropped: dropped + taken.unresolved,
            internal_panics: panics_now.wrapping_sub(std::mem::replace(&mut self.panics_seen, panics_now)),
            capture_pct: sampler::capture_pct(),
            max_frames: self.max_frames,
            truncated_walks: stack::truncated_walks(),
            uncounted: stats::overflowed(),
            endpoint_counts: span::take_endpoint_counts(),
        }
    }

    /// Stops sampling and records what was still queued, for a last
    /// [`take_period`](Self::take_period).
    pub(crate) fn close(&mut self) {
        sampler::SESSION.store(0, Release);
        self.events.close(&mut self.recorder);
        self.closed = true;
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if !self.closed {
            // A reader that failed must not leave user threads sampling into
            // a queue nobody reads.
            sampler::SESSION.store(0, Release);
            recorder::close();
        }
    }
}

/// One period of a session: what was sampled and counted, every time in
/// nanoseconds.
#[derive(Debug, Clone)]
pub(crate) struct Period {
    pub(crate) start: SystemTime,
    pub(crate) end: SystemTime,
    /// Measured on the monotonic clock.
    pub(crate) duration: Duration,
    /// The sampled events, aggregated by key.
    pub(crate) samples: Vec<(SampleKey, Aggregate)>,
    /// The exact totals per lock name and mode.
    pub(crate) totals: FxHashMap<(SiteKey, Mode), Totals>,
    /// Sampled events aggregated.
    pub(crate) recorded: u64,
    /// Sampled events lost: dropped on a full queue, or whose stack the
    /// recorder had forgotten.
    pub(crate) dropped: u64,
    /// Panics caught inside profiler code on user threads.
    pub(crate) internal_panics: u64,
    /// The capture the events were sampled at, in percent.
    pub(crate) capture_pct: f64,
    /// The deepest stack kept.
    pub(crate) max_frames: usize,
    /// Stack walks that ended early at a frame the unwinder could not
    /// unwind, since the process started.
    pub(crate) truncated_walks: u64,
    /// Acquisitions not counted, of lock names beyond the first
    /// [`MAX_LOCK_NAMES`], since the process started.
    pub(crate) uncounted: u64,
    /// Requests served in the period, per endpoint (see [`span`]).
    pub(crate) endpoint_counts: Vec<(std::sync::Arc<str>, u64)>,
}

/// Consecutive periods summed into one, as if they had been taken at once:
/// the profiler cuts a period into sub-periods when an on-demand profile
/// starts or ends (feature `http`), and each profile made of them (the
/// periodic one, an on-demand window, the cumulative one) is the sum of its
/// sub-periods. Every count and time is a sum of the sub-periods' own, so a
/// count read in one sub-period is in each sum that holds it exactly once.
#[cfg(feature = "http")]
#[derive(Debug, Clone)]
pub(crate) struct PeriodSum {
    period: Period,
    /// Where each sample key is in `period.samples`.
    index: FxHashMap<SumKey, usize>,
}

/// A [`SampleKey`] as the sum finds it: the thread by id and the stack by
/// hash, as the recorder aggregates them.
#[cfg(feature = "http")]
type SumKey = (
    super::EventKind,
    SiteKey,
    Mode,
    u64,
    Option<super::labels::TaskLabels>,
    // The span's ids: its endpoint may be known in a later sub-period only.
    Option<(u64, Option<u64>)>,
    u64,
    u32,
);

#[cfg(feature = "http")]
impl PeriodSum {
    /// A sum of one period.
    pub(crate) fn new(first: Period) -> PeriodSum {
        let index = first
            .samples
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (sum_key(k), i))
            .collect();
        PeriodSum { period: first, index }
    }

    /// Adds the period that follows the last one added.
    pub(crate) fn add(&mut self, next: &Period) {
        let sum = &mut self.period;
        for (key, agg) in &next.samples {
            match self.index.get(&sum_key(key)) {
                Some(&i) => {
                    if let Some((k, a)) = sum.samples.get_mut(i) {
                        // A span whose root ended since: its endpoint now.
                        if let (Some(span), Some(later)) = (&mut k.span, &key.span) {
                            if span.endpoint.is_none() {
                                span.endpoint.clone_from(&later.endpoint);
                            }
                        }
                        a.events = a.events.saturating_add(agg.events);
                        a.weight = a.weight.saturating_add(agg.weight);
                        a.total_ns = a.total_ns.saturating_add(agg.total_ns);
                        a.spread.merge(&agg.spread);
                    }
                }
                None => {
                    self.index.insert(sum_key(key), sum.samples.len());
                    sum.samples.push((key.clone(), *agg));
                }
            }
        }
        for (key, t) in &next.totals {
            let s = sum.totals.entry(*key).or_default();
            s.acquired = add_known(s.acquired, t.acquired);
            s.contended = s.contended.saturating_add(t.contended);
            s.wait_ns = add_known(s.wait_ns, t.wait_ns);
        }
        for (endpoint, n) in &next.endpoint_counts {
            match sum.endpoint_counts.iter_mut().find(|(e, _)| e == endpoint) {
                Some((_, total)) => *total = total.saturating_add(*n),
                None => sum.endpoint_counts.push((endpoint.clone(), *n)),
            }
        }
        sum.end = next.end;
        sum.duration = sum.duration.saturating_add(next.duration);
        sum.recorded = sum.recorded.saturating_add(next.recorded);
        sum.dropped = sum.dropped.saturating_add(next.dropped);
        sum.internal_panics = sum.internal_panics.saturating_add(next.internal_panics);
        // The same all session long, or counted since the process started:
        // the latest is the sum's.
        sum.capture_pct = next.capture_pct;
        sum.max_frames = next.max_frames;
        sum.truncated_walks = next.truncated_walks;
        sum.uncounted = next.uncounted;
    }

    /// The periods summed so far, as one.
    pub(crate) fn period(&self) -> &Period {
        &self.period
    }

    pub(crate) fn into_period(self) -> Period {
        self.period
    }
}

#[cfg(feature = "http")]
fn sum_key(k: &SampleKey) -> SumKey {
    (
        k.kind,
        k.site,
        k.mode,
        k.thread.id,
        k.task.clone(),
        k.span.as_ref().map(|s| (s.span_id, s.local_root_span_id)),
        k.stack.hash,
        k.peer,
    )
}

/// Two exact totals of consecutive periods: known if either is.
#[cfg(feature = "http")]
fn add_known(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.saturating_add(b)),
        (a, b) => a.or(b),
    }
}

/// Lock names whose acquisitions are counted exactly.
pub(crate) const MAX_LOCK_NAMES: usize = stats::MAX_SITES;

/// In a forked child no profiler thread runs: stop sampling there at once, so
/// the child never touches the recorder's state (whose locks another thread of
/// the parent may have held at the fork), and let it open its own session.
fn install_fork_handler() {
    #[cfg(unix)]
    {
        extern "C" fn in_child() {
            sampler::SESSION.store(0, Relaxed);
            CLAIMED.store(false, Relaxed);
        }
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: `in_child` only stores to atomics, which is
            // async-signal-safe as a fork handler must be.
            let rc = unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
            if rc != 0 {
                log::warn!("lockprof: cannot install a fork handler (error {rc}); a forked child keeps sampling into a queue nobody reads");
            }
        });
    }
}

#[cfg(all(test, feature = "http"))]
mod tests {
    use super::*;
    use crate::record::labels::ThreadMeta;
    use crate::record::stack::Stack;
    use crate::record::EventKind;

    fn period(samples: &[(usize, u64, u64)], acquired: u64, ms: u64) -> Period {
        let thread = ThreadMeta::current();
        let site = SiteKey {
            file: "a.rs",
            line: 1,
            column: 1,
            name: Some("l"),
        };
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1);
        Period {
            start: at,
            end: at + Duration::from_millis(ms),
            duration: Duration::from_millis(ms),
            samples: samples
                .iter()
                .map(|&(ip, events, total_ns)| {
                    let key = SampleKey {
                        kind: EventKind::Acquire,
                        site,
                        mode: Mode::Exclusive,
                        thread: std::sync::Arc::clone(&thread),
                        task: None,
                        span: None,
                        stack: Stack::new(&[ip], 0),
                        peer: 0,
                    };
                    let agg = Aggregate {
                        events,
                        weight: events,
                        total_ns,
                        spread: Default::default(),
                    };
                    (key, agg)
                })
                .collect(),
            totals: [(
                (site, Mode::Exclusive),
                Totals {
                    acquired: Some(acquired),
                    contended: 1,
                    wait_ns: Some(10),
                },
            )]
            .into_iter()
            .collect(),
            recorded: samples.iter().map(|s| s.1).sum(),
            dropped: 1,
            internal_panics: 0,
            capture_pct: 100.0,
            max_frames: 64,
            truncated_walks: 0,
            uncounted: 0,
            endpoint_counts: Vec::new(),
        }
    }

    #[test]
    fn a_sum_of_periods_is_the_period_they_make_together() {
        let mut sum = PeriodSum::new(period(&[(1, 2, 20), (2, 1, 5)], 3, 100));
        sum.add(&period(&[(2, 4, 40), (3, 1, 1)], 5, 250));
        let p = sum.into_period();
        let mut samples: Vec<(usize, u64, u64)> = p
            .samples
            .iter()
            .map(|(k, a)| (k.stack.ips[0], a.events, a.total_ns))
            .collect();
        samples.sort();
        assert_eq!(samples, [(1, 2, 20), (2, 5, 45), (3, 1, 1)]);
        let t = p.totals.values().next().copied().unwrap_or_default();
        assert_eq!((t.acquired, t.contended, t.wait_ns), (Some(8), 2, Some(20)));
        assert_eq!((p.recorded, p.dropped), (8, 2));
        assert_eq!(p.duration, Duration::from_millis(350));
        assert_eq!(p.start, SystemTime::UNIX_EPOCH + Duration::from_secs(1));
        assert_eq!(p.end, p.start + Duration::from_millis(250));
    }
}
