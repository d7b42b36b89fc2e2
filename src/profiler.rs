//! The profiler: its builder, its background thread, and the handle that
//! stops it.

use std::sync::atomic::{AtomicU64, Ordering::*};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::config::{self, ConfigError, Settings};
use crate::encode::Encoder;
use crate::export::datadog::settings::{ApiKey, DatadogSettings};
use crate::export::datadog::{UploadCounters, UploadStats};
use crate::export::{output, EncodedProfile, Export, ExportError, ProfileStats};
use crate::record::session::{self, Claim, Session, Unwinder};

/// Profile sequence numbers run on across sessions of one process.
static NEXT_SEQ: AtomicU64 = AtomicU64::new(0);

/// How often the recorder polls the threads' queues while events arrive, and
/// at most when none do. At the busy rate a thread fills its default queue
/// (4096 events) only above 4 million sampled events a second.
const POLL_BUSY: Duration = Duration::from_millis(1);
const POLL_IDLE: Duration = Duration::from_millis(16);

/// Entry point: `Profiler::builder().capture_pct(5.0).start()`.
#[derive(Debug)]
pub struct Profiler;

impl Profiler {
    /// A builder with the defaults (capture 1%, 64 frames, 60 s; uploads
    /// when a Datadog agent is found, local files otherwise: see
    /// [`ProfilerBuilder::upload`]).
    pub fn builder() -> ProfilerBuilder {
        ProfilerBuilder {
            settings: Settings::default(),
            datadog: DatadogSettings::default(),
            upload: None,
            by_hand: ByHand::default(),
            exporter: None,
        }
    }
}

/// Configures and starts a profiler.
///
/// Settings made with its methods win over the environment, whatever the
/// order of the calls.
pub struct ProfilerBuilder {
    settings: Settings,
    datadog: DatadogSettings,
    upload: Option<bool>,
    by_hand: ByHand,
    exporter: Option<Box<dyn Export>>,
}

/// Core settings set by builder methods, which the environment leaves alone.
#[derive(Debug, Default, Clone, Copy)]
struct ByHand {
    capture_pct: bool,
    max_samples_per_sec: bool,
    max_frames: bool,
    flush_interval: bool,
    output_pprof: bool,
}

impl std::fmt::Debug for ProfilerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProfilerBuilder")
            .field("settings", &self.settings)
            .field("datadog", &self.datadog)
            .field("upload", &self.upload)
            .field("exporter", &self.exporter.as_ref().map(|e| e.describe()))
            .finish()
    }
}

impl ProfilerBuilder {
    /// Share of acquisitions sampled with a stack, in percent: 0, or
    /// 0.000001 to 100 (default 1). At 100 every acquisition and release is
    /// recorded.
    pub fn capture_pct(mut self, pct: f64) -> Self {
        self.settings.capture_pct = pct;
        self.by_hand.capture_pct = true;
        self
    }

    /// The sampling budget: at most `per_second` sampled acquisitions per
    /// second on each thread (default 10,000 below capture 100 %, none at
    /// 100 %; `DD_PROFILING_MAX_SAMPLES_PER_SEC`; 0 turns it off). A thread
    /// that would sample more samples less often and weighs each sample
    /// more, so that counts, waits and holds stay unbiased estimates while
    /// the profiler's cost stays bounded however fast the locks are taken.
    pub fn max_samples_per_sec(mut self, per_second: u64) -> Self {
        self.settings.max_samples_per_sec = Some(per_second);
        self.by_hand.max_samples_per_sec = true;
        self
    }

    /// Deepest stack kept, 1 to 4096 (default 64).
    pub fn max_frames(mut self, frames: usize) -> Self {
        self.settings.max_frames = frames;
        self.by_hand.max_frames = true;
        self
    }

    /// Period covered by each profile, and so the upload interval: 100 ms to
    /// a day (default 60 s; `DD_PROFILING_UPLOAD_INTERVAL`, in seconds).
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.settings.flush_interval = interval;
        self.by_hand.flush_interval = true;
        self
    }

    /// Writes profiles to `<prefix>.<pid>.<seq>.pprof` instead of uploading
    /// them (`DD_PROFILING_OUTPUT_PPROF`); a prefix ending in a separator or
    /// naming an existing directory writes
    /// `<dir>/<executable>.<pid>.<seq>.pprof`.
    pub fn output_pprof(mut self, prefix: impl Into<std::path::PathBuf>) -> Self {
        self.settings.output_pprof = Some(prefix.into());
        self.by_hand.output_pprof = true;
        self
    }

    /// Sends profiles to `exporter` instead of local files.
    pub fn export(mut self, exporter: impl Export + 'static) -> Self {
        self.exporter = Some(Box::new(exporter));
        self
    }

    /// Capacity of each thread's queue of sampled events for the recorder
    /// (default 4096 events of 64 bytes: a thread that records holds a
    /// 256 KiB ring), 1 to 2^20 (a 64 MiB ring). A full queue drops events
    /// and counts them.
    pub fn queue_capacity(mut self, events: usize) -> Self {
        self.settings.queue_capacity = events;
        self
    }

    /// The stack unwinder (default: frame pointers when detected).
    pub fn unwinder(mut self, unwinder: Unwinder) -> Self {
        self.settings.unwinder = unwinder;
        self
    }

    /// Whether to upload to Datadog: `true` uploads (to `localhost:8126`
    /// when no agent is configured), `false` writes local files. Unset, the
    /// profiler uploads when an agent is configured (`DD_TRACE_AGENT_URL`,
    /// `DD_AGENT_HOST`, `DD_TRACE_AGENT_PORT` or their methods), agentless
    /// mode is on, the agent's socket `/var/run/datadog/apm.socket` exists,
    /// or an agent answers on `localhost:8126` at start; otherwise it writes
    /// local files. [`output_pprof`](Self::output_pprof) always means files.
    pub fn upload(mut self, upload: bool) -> Self {
        self.upload = Some(upload);
        self
    }

    /// The `service` tag (`DD_SERVICE`; default: the executable's name).
    pub fn service(mut self, service: impl Into<String>) -> Self {
        self.datadog.service = Some(service.into());
        self
    }

    /// The `env` tag (`DD_ENV`).
    pub fn env(mut self, env: impl Into<String>) -> Self {
        self.datadog.env = Some(env.into());
        self
    }

    /// The `version` tag (`DD_VERSION`).
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.datadog.version = Some(version.into());
        self
    }

    /// Tags for every profile, each `key:value` (`DD_TAGS`). Malformed ones
    /// are logged and left out.
    pub fn tags<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, tags: I) -> Self {
        let tags: Vec<S> = tags.into_iter().collect();
        self.datadog.tags = Some(crate::export::datadog::settings::clean_tags(
            "tags",
            tags.iter().map(AsRef::as_ref),
        ));
        self
    }

    /// More tags, for profiles only (`DD_PROFILING_TAGS`).
    pub fn profiling_tags<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, tags: I) -> Self {
        let tags: Vec<S> = tags.into_iter().collect();
        self.datadog.profiling_tags = Some(crate::export::datadog::settings::clean_tags(
            "profiling_tags",
            tags.iter().map(AsRef::as_ref),
        ));
        self
    }

    /// The agent's URL: `http://host:port`, `https://…` or
    /// `unix:///path/to/socket` (`DD_TRACE_AGENT_URL`). Checked at start.
    pub fn agent_url(mut self, url: impl Into<String>) -> Self {
        self.datadog.agent_url = Some(url.into());
        self
    }

    /// The agent's host (`DD_AGENT_HOST`, default `localhost`).
    pub fn agent_host(mut self, host: impl Into<String>) -> Self {
        self.datadog.agent_host = Some(host.into());
        self
    }

    /// The agent's port (`DD_TRACE_AGENT_PORT`, default 8126).
    pub fn agent_port(mut self, port: u16) -> Self {
        self.datadog.agent_port = Some(port);
        self
    }

    /// Uploads straight to Datadog's intake, without an agent
    /// (`DD_PROFILING_AGENTLESS`); needs an API key.
    pub fn agentless(mut self, agentless: bool) -> Self {
        self.datadog.agentless = Some(agentless);
        self
    }

    /// The API key for agentless uploads (`DD_API_KEY`). Never logged.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.datadog.api_key = Some(ApiKey::new(key));
        self
    }

    /// The Datadog site for agentless uploads (`DD_SITE`, default
    /// `datadoghq.com`).
    pub fn site(mut self, site: impl Into<String>) -> Self {
        self.datadog.site = Some(site.into());
        self
    }

    /// Timeout of one upload request, and the longest [`ProfilerHandle::stop`]
    /// waits for the last upload: 1 ms to an hour
    /// (`DD_PROFILING_API_TIMEOUT_MS`, default 10 s).
    pub fn api_timeout(mut self, timeout: Duration) -> Self {
        self.datadog.api_timeout = Some(timeout);
        self
    }

    /// Applies the `DD_*` variables to every setting not set by a builder
    /// method, before or after this call. Bad values are returned and leave
    /// the default in place.
    pub fn with_env(mut self) -> (Self, Vec<ConfigError>) {
        let hand = self.settings.clone();
        let (mut settings, mut errors) = config::core_from_env(self.settings);
        if self.by_hand.capture_pct {
            settings.capture_pct = hand.capture_pct;
        }
        if self.by_hand.max_frames {
            settings.max_frames = hand.max_frames;
        }
        if self.by_hand.max_samples_per_sec {
            settings.max_samples_per_sec = hand.max_samples_per_sec;
        }
        if self.by_hand.flush_interval {
            settings.flush_interval = hand.flush_interval;
        }
        if self.by_hand.output_pprof {
            settings.output_pprof = hand.output_pprof;
        }
        self.settings = settings;
        errors.extend(self.datadog.fill_from_env());
        (self, errors)
    }

    /// The Datadog settings as they stand.
    pub fn datadog_settings(&self) -> &DatadogSettings {
        &self.datadog
    }

    /// The settings as they stand.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Starts profiling. Fails if the settings are invalid or a profiler is
    /// already running in this process.
    pub fn start(self) -> Result<ProfilerHandle, StartError> {
        self.settings.validate()?;
        let claim = Claim::take().ok_or(StartError::AlreadyRunning)?;
        let output::Chosen { exporter, upload } = output::open(output::Request {
            settings: &self.settings,
            datadog: &self.datadog,
            upload: self.upload,
            exporter: self.exporter,
        })?;
        let settings = self.settings;
        let description = exporter.describe();
        let (session, sampling) = Session::open(claim, &settings.session());
        let unwinder = session.unwinder();
        let shared = Arc::new(Shared::default());
        let (control_tx, control_rx) = crossbeam_channel::bounded(4);
        let worker = Worker {
            interval: settings.flush_interval,
            exporter,
            control: control_rx,
            shared: Arc::clone(&shared),
            session,
            encoder: Encoder::default(),
        };
        let thread = std::thread::Builder::new()
            .name("lockprof".into())
            .spawn(move || worker.run())
            .map_err(StartError::Thread)?;
        // Sampling starts only once everything above is in place.
        sampling.start();
        log::debug!(
            "lockprof started: capture {}%, {:?} unwinder, output {}",
            settings.capture_pct,
            unwinder,
            description
        );
        Ok(ProfilerHandle {
            control: std::mem::ManuallyDrop::new(control_tx),
            thread: Some(thread),
            shared,
            upload,
            description,
            uses_frame_pointers: unwinder == Unwinder::FramePointers,
            unwinder,
            pid: std::process::id(),
        })
    }
}

/// Why the profiler did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A setting is out of range.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Another profiler is running in this process; stop it first.
    #[error(
        "a lockprof profiler is already running in this process; stop its handle before starting another"
    )]
    AlreadyRunning,
    /// The profiler thread could not be spawned.
    #[error("cannot spawn the profiler thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// Counters visible from the handle.
#[derive(Debug, Default)]
struct Shared {
    profiles_exported: AtomicU64,
    profiles_failed: AtomicU64,
    events_recorded: AtomicU64,
    events_dropped: AtomicU64,
    last_error: parking_lot::Mutex<Option<String>>,
    /// Files written, oldest first, at most [`FILES_LISTED`].
    files: parking_lot::Mutex<std::collections::VecDeque<std::path::PathBuf>>,
}

/// The most files [`ProfilerStats::files`] lists (the newest ones).
const FILES_LISTED: usize = 64;

/// What a running profiler has done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfilerStats {
    /// Profiles handed to the exporter successfully.
    pub profiles_exported: u64,
    /// Profiles the exporter failed to deliver.
    pub profiles_failed: u64,
    /// Sampled events aggregated.
    pub events_recorded: u64,
    /// Sampled events dropped on a full queue.
    pub events_dropped: u64,
    /// The last export error, if any.
    pub last_error: Option<String>,
    /// Upload counts, when profiles go to Datadog.
    pub upload: Option<UploadStats>,
    /// The local files written so far, oldest first (the newest 64), for
    /// output to files: the paths to open with `lockprof` or `go tool pprof`.
    pub files: Vec<std::path::PathBuf>,
}

enum Control {
    Flush(Sender<()>),
    Stop(Sender<()>),
}

/// A running profiler. Stopping it, or dropping it, writes a last profile.
pub struct ProfilerHandle {
    /// Dropped by hand: a forked child must not touch the channel, whose
    /// internal lock the parent's profiler thread may have held at the fork.
    control: std::mem::ManuallyDrop<Sender<Control>>,
    thread: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
    upload: Option<UploadCounters>,
    description: String,
    uses_frame_pointers: bool,
    unwinder: Unwinder,
    /// The process that started the profiler: a forked child has a copy of
    /// the handle but no profiler thread.
    pid: u32,
}

impl std::fmt::Debug for ProfilerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProfilerHandle")
            .field("output", &self.description)
            .field("stats", &self.stats())
            .finish()
    }
}

impl ProfilerHandle {
    /// Ends the current period now and exports its profile; returns when the
    /// exporter has taken it (for uploads: queued, sent in the background).
    pub fn flush(&self) {
        let (tx, rx) = crossbeam_channel::bounded(1);
        if self.control.send(Control::Flush(tx)).is_ok() {
            let _ = rx.recv();
        }
    }

    /// Whether stacks are captured by walking frame pointers (fast) rather
    /// than with `backtrace` (see the README's "Stack capture").
    pub fn uses_frame_pointers(&self) -> bool {
        self.uses_frame_pointers
    }

    /// The unwinder chosen at start: [`Unwinder::Auto`](Unwinder::Auto)
    /// resolved to the one in use, e.g. `EhFrame` in a build without frame
    /// pointers.
    pub fn unwinder(&self) -> Unwinder {
        self.unwinder
    }

    /// Where profiles go, in words.
    pub fn output(&self) -> &str {
        &self.description
    }

    /// Counts of profiles and events so far.
    pub fn stats(&self) -> ProfilerStats {
        ProfilerStats {
            profiles_exported: self.shared.profiles_exported.load(Relaxed),
            profiles_failed: self.shared.profiles_failed.load(Relaxed),
            events_recorded: self.shared.events_recorded.load(Relaxed),
            events_dropped: self.shared.events_dropped.load(Relaxed),
            last_error: self.shared.last_error.lock().clone(),
            upload: self.upload.as_ref().map(UploadCounters::get),
            files: self.shared.files.lock().iter().cloned().collect(),
        }
    }

    /// Stops sampling, exports a last profile and waits for the profiler
    /// thread; an upload in progress is given at most the API timeout.
    /// Returns the final counts.
    ///
    /// Do not call it (or drop the handle) while holding a lock that your
    /// `log` logger takes: the last flush may log from the profiler thread,
    /// which would wait for that lock while this waits for the flush.
    pub fn stop(mut self) -> ProfilerStats {
        self.shutdown();
        self.stats()
    }

    fn shutdown(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        if std::process::id() != self.pid {
            // A forked child: the profiler thread lives in the parent only.
            std::mem::forget(thread);
            return;
        }
        let (tx, rx) = crossbeam_channel::bounded(1);
        if self.control.send(Control::Stop(tx)).is_ok() {
            let _ = rx.recv();
        }
        let _ = thread.join();
    }
}

impl Drop for ProfilerHandle {
    fn drop(&mut self) {
        self.shutdown();
        if std::process::id() == self.pid {
            // SAFETY: dropped once, here; the field is never used again.
            unsafe { std::mem::ManuallyDrop::drop(&mut self.control) };
        }
    }
}

struct Worker {
    interval: Duration,
    exporter: Box<dyn Export>,
    control: Receiver<Control>,
    shared: Arc<Shared>,
    session: Session,
    encoder: Encoder,
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
            // Read after every flush, however late the schedule: a flush
            // slower than the interval must not keep `stop` and `flush`
            // waiting.
            let wait = deadline.saturating_duration_since(Instant::now()).min(poll);
            match self.control.recv_timeout(wait) {
                Ok(Control::Flush(ack)) => {
                    self.session.poll();
                    self.flush();
                    deadline = Instant::now() + interval;
                    let _ = ack.send(());
                }
                Ok(Control::Stop(ack)) => {
                    self.stop();
                    let _ = ack.send(());
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.stop();
                    return;
                }
            }
        }
    }

    fn stop(&mut self) {
        self.session.close();
        self.flush();
        self.exporter.finish();
    }

    fn flush(&mut self) {
        let period = self.session.take_period();
        let (start, end) = (period.start, period.end);
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
                self.fail(ExportError::Other(format!("cannot compress profile: {e}")));
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

/// Starts a profiler configured by the environment, as Datadog's libraries
/// do: only when `DD_PROFILING_ENABLED` is true and
/// `DD_PROFILING_LOCK_ENABLED` is not false. Bad values are logged and their
/// defaults used; a failure to start is logged and returns `None`.
pub fn start_from_env() -> Option<ProfilerHandle> {
    let (enabled, errors) = config::lock_profiling_enabled();
    for e in &errors {
        log::warn!("lockprof: {e}; using the default");
    }
    if !enabled {
        return None;
    }
    let (builder, errors) = Profiler::builder().with_env();
    for e in &errors {
        log::warn!("lockprof: {e}; using the default");
    }
    match builder.start() {
        Ok(handle) => Some(handle),
        Err(e) => {
            log::error!("lockprof: profiler not started: {e}");
            None
        }
    }
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
