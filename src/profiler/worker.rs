//! The profiler thread: polls the session's queues, flushes a period when
//! one is due or asked for, and hands each profile to the exporter.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

#[cfg(feature = "http")]
use super::on_demand::OnDemand;
use crate::encode::Encoder;
use crate::export::{EncodedProfile, Export, ExportError, ProfileStats};
use crate::record::session::{self, Session};

/// Profile sequence numbers run on across sessions of one process.
static NEXT_SEQ: AtomicU64 = AtomicU64::new(0);

/// How often the recorder polls the threads' queues while events arrive, and
/// at most when none do. At the busy rate a thread fills its default queue
/// (4096 events) only above 4 million sampled events a second.
const POLL_BUSY: Duration = Duration::from_millis(1);
const POLL_IDLE: Duration = Duration::from_millis(16);

/// What the handle asks of the profiler thread, with where to answer.
pub(super) enum Control {
    Flush(Sender<()>),
    Stop(Sender<()>),
}

/// Counters the profiler thread keeps for the handle.
#[derive(Debug, Default)]
pub(super) struct Shared {
    pub(super) profiles_exported: AtomicU64,
    pub(super) profiles_failed: AtomicU64,
    pub(super) events_recorded: AtomicU64,
    pub(super) events_dropped: AtomicU64,
    pub(super) last_error: parking_lot::Mutex<Option<String>>,
    /// Files written, oldest first, at most [`FILES_LISTED`].
    pub(super) files: parking_lot::Mutex<std::collections::VecDeque<std::path::PathBuf>>,
}

/// The most files [`ProfilerStats::files`](super::ProfilerStats::files)
/// lists (the newest ones).
const FILES_LISTED: usize = 64;

/// A profiler thread, running.
pub(super) struct Spawned {
    pub(super) control: Sender<Control>,
    pub(super) thread: JoinHandle<()>,
    pub(super) shared: Arc<Shared>,
}

/// Starts the profiler thread: it reads `session` and hands a profile to
/// `exporter` every `interval` (and answers `on_demand`'s server).
pub(super) fn spawn(
    session: Session,
    exporter: Box<dyn Export>,
    interval: Duration,
    #[cfg(feature = "http")] on_demand: Option<OnDemand>,
) -> std::io::Result<Spawned> {
    let shared = Arc::new(Shared::default());
    let (control, control_rx) = crossbeam_channel::bounded(4);
    let worker = Worker {
        interval,
        exporter,
        control: control_rx,
        shared: Arc::clone(&shared),
        session,
        encoder: Encoder::default(),
        #[cfg(feature = "http")]
        on_demand,
    };
    let thread = std::thread::Builder::new()
        .name("lockprof".into())
        .spawn(move || worker.run())?;
    Ok(Spawned {
        control,
        thread,
        shared,
    })
}

/// The profiler thread's state.
struct Worker {
    interval: Duration,
    exporter: Box<dyn Export>,
    control: Receiver<Control>,
    shared: Arc<Shared>,
    session: Session,
    encoder: Encoder,
    #[cfg(feature = "http")]
    on_demand: Option<OnDemand>,
}

/// What woke the profiler thread.
enum Woken {
    Control(Control),
    #[cfg(feature = "http")]
    Ask(crate::serve::Ask),
    Timeout,
    /// The handle is gone.
    Disconnected,
}

impl Worker {
    fn run(mut self) {
        // Nothing this thread does is ever recorded, whatever the exporter,
        // a logger or an allocator does, to its last destructor.
        session::mark_profiler_thread();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run_loop()));
        if outcome.is_err() {
            // Dropping the session stops sampling.
            log::error!("lockprof: the profiler thread failed; profiling stopped");
        }
    }

    fn run_loop(&mut self) {
        let interval = self.interval;
        let mut deadline = Instant::now() + interval;
        let mut poll = POLL_BUSY;
        loop {
            // Events are polled, never waited on: a locking thread that
            // finds the recorder blocked on the queue has to wake it, a
            // system call on its sampled event.
            poll = if self.session.poll() > 0 {
                POLL_BUSY
            } else {
                (poll * 2).min(POLL_IDLE)
            };
            if Instant::now() >= deadline {
                self.flush();
                deadline = next_deadline(deadline, interval, Instant::now());
            }
            #[cfg(feature = "http")]
            self.end_windows();
            // Read after every flush, however late the schedule: a flush
            // slower than the interval must not keep `stop` and `flush`
            // waiting.
            let wait = deadline.saturating_duration_since(Instant::now()).min(poll);
            #[cfg(feature = "http")]
            let wait = match self.on_demand.as_ref().and_then(OnDemand::next_end) {
                Some(end) => wait.min(end.saturating_duration_since(Instant::now())),
                None => wait,
            };
            match self.wait(wait) {
                Woken::Control(Control::Flush(ack)) => {
                    self.session.poll();
                    self.flush();
                    deadline = Instant::now() + interval;
                    let _ = ack.send(());
                }
                Woken::Control(Control::Stop(ack)) => {
                    self.stop();
                    let _ = ack.send(());
                    return;
                }
                #[cfg(feature = "http")]
                Woken::Ask(ask) => self.answer(ask),
                Woken::Timeout => {}
                Woken::Disconnected => {
                    self.stop();
                    return;
                }
            }
        }
    }

    /// Waits at most `wait` for the handle, or the endpoint's server.
    fn wait(&self, wait: Duration) -> Woken {
        #[cfg(feature = "http")]
        if let Some(on_demand) = &self.on_demand {
            return crossbeam_channel::select! {
                recv(self.control) -> control => control.map_or(Woken::Disconnected, Woken::Control),
                // The server keeps its end while `on_demand` lives.
                recv(on_demand.asks()) -> ask => ask.map_or(Woken::Timeout, Woken::Ask),
                default(wait) => Woken::Timeout,
            };
        }
        match self.control.recv_timeout(wait) {
            Ok(control) => Woken::Control(control),
            Err(RecvTimeoutError::Timeout) => Woken::Timeout,
            Err(RecvTimeoutError::Disconnected) => Woken::Disconnected,
        }
    }

    fn stop(&mut self) {
        self.session.close();
        self.flush();
        // After the last flush, which ends the periodic profile's
        // sub-periods: windows still open answer that the profiler
        // stopped, and the server stops.
        #[cfg(feature = "http")]
        drop(self.on_demand.take());
        self.exporter.finish();
    }

    fn flush(&mut self) {
        let period = self.session.take_period();
        #[cfg(feature = "http")]
        let period = match &mut self.on_demand {
            Some(on_demand) => on_demand.end_periodic(period),
            None => period,
        };
        let (start, end) = (period.start, period.end);
        let endpoint_counts = period
            .endpoint_counts
            .iter()
            .map(|(endpoint, n)| (endpoint.to_string(), *n))
            .collect();
        let stats = ProfileStats {
            events_recorded: period.recorded,
            events_dropped: period.dropped,
            samples: 0,
            internal_panics: period.internal_panics,
        };
        self.shared
            .events_recorded
            .fetch_add(stats.events_recorded, Relaxed);
        self.shared
            .events_dropped
            .fetch_add(stats.events_dropped, Relaxed);
        let session = &mut self.session;
        let encoded = match self.encoder.encode(period, &mut || {
            session.poll();
        }) {
            Ok(encoded) => encoded,
            Err(e) => {
                self.fail(ExportError::Encode(e));
                return;
            }
        };
        let profile = EncodedProfile {
            gzipped_pprof: encoded.gzipped_pprof,
            start,
            end,
            seq: NEXT_SEQ.fetch_add(1, Relaxed),
            stats: ProfileStats {
                samples: encoded.samples,
                ..stats
            },
            endpoint_counts,
        };
        match self.exporter.export(&profile) {
            Ok(()) => {
                self.shared.profiles_exported.fetch_add(1, Relaxed);
                if let Some(path) = self.exporter.last_file() {
                    let mut files = self.shared.files.lock();
                    if files.len() == FILES_LISTED {
                        files.pop_front();
                    }
                    files.push_back(path.to_owned());
                }
            }
            Err(e) => self.fail(e),
        }
    }

    /// Answers the endpoint's server: opens a window, or encodes the
    /// profile since the start. Either way the period is cut now.
    #[cfg(feature = "http")]
    fn answer(&mut self, ask: crate::serve::Ask) {
        self.cut();
        let Some(on_demand) = &mut self.on_demand else {
            return;
        };
        match ask.window {
            Some(length) => {
                let id = on_demand.open(length, ask.reply);
                // Tests wait for this line to know the window is open.
                log::debug!(
                    "lockprof: on-demand profile {id} ({} s) started",
                    length.as_secs()
                );
            }
            None => {
                let since_start = on_demand.since_start();
                let answer = self.encode_answer(since_start);
                ask.reply.send(answer);
            }
        }
    }

    /// Ends the windows whose time is up: cuts the period, then encodes and
    /// answers each.
    #[cfg(feature = "http")]
    fn end_windows(&mut self) {
        let now = Instant::now();
        let due = self.on_demand.as_ref().and_then(OnDemand::next_end);
        if due.is_none_or(|end| end > now) {
            return;
        }
        // Before the cut: what a test did before it read this line is in
        // the window.
        log::debug!("lockprof: on-demand profiles ending");
        self.cut();
        let ended = match &mut self.on_demand {
            Some(on_demand) => on_demand.take_ended(Instant::now()),
            None => return,
        };
        for window in ended {
            log::debug!(
                "lockprof: on-demand profile {} ({} s) ended",
                window.id,
                window.length.as_secs()
            );
            let answer = self.encode_answer(window.period);
            window.reply.send(answer);
        }
    }

    /// Takes a sub-period for every profile being built.
    #[cfg(feature = "http")]
    fn cut(&mut self) {
        self.session.poll();
        let period = self.session.take_period();
        if let Some(on_demand) = &mut self.on_demand {
            on_demand.add(period);
        }
    }

    #[cfg(feature = "http")]
    fn encode_answer(&mut self, period: Option<crate::record::session::Period>) -> crate::serve::Answer {
        use crate::serve::Answer;
        let Some(period) = period else {
            return Answer::Failed("no period was recorded".to_owned());
        };
        let session = &mut self.session;
        match self.encoder.encode(period, &mut || {
            session.poll();
        }) {
            Ok(encoded) => Answer::Profile(encoded.gzipped_pprof),
            Err(e) => Answer::Failed(e.to_string()),
        }
    }

    fn fail(&mut self, e: ExportError) {
        log::error!("lockprof: profile not exported: {e}");
        self.shared.profiles_failed.fetch_add(1, Relaxed);
        *self.shared.last_error.lock() = Some(e.to_string());
    }
}

/// The flush after the one due at `due`, which ended at `now`: the next tick
/// of the schedule still ahead. Ticks missed while a flush ran are skipped
/// (as tokio's `MissedTickBehavior::Skip`), never made up back to back.
fn next_deadline(due: Instant, interval: Duration, now: Instant) -> Instant {
    let next = due + interval;
    if next > now {
        return next;
    }
    // Whole intervals since `due`, then what is left of the current one.
    let into_tick = now.duration_since(due).as_nanos() % interval.as_nanos().max(1);
    now + interval.saturating_sub(Duration::from_nanos(into_tick as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_schedule_skips_missed_ticks() {
        let t0 = Instant::now();
        let second = Duration::from_secs(1);
        // A flush shorter than the interval: the next tick.
        assert_eq!(
            next_deadline(t0, second, t0 + Duration::from_millis(200)),
            t0 + second
        );
        // A flush of 3.5 s: the ticks at 1, 2 and 3 s are missed and skipped;
        // the one at 4 s is still ahead.
        assert_eq!(
            next_deadline(t0, second, t0 + Duration::from_millis(3500)),
            t0 + 4 * second
        );
        // Exactly on a tick: the one after, never now.
        assert_eq!(next_deadline(t0, second, t0 + 3 * second), t0 + 4 * second);
    }
}
