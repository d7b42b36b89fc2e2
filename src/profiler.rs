//! The profiler: its builder, its background thread, and the handle that
//! stops it.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::*};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender};

use crate::config::{self, ConfigError, Settings};
use crate::export::{EncodedProfile, Export, ExportError, FileExporter, ProfileStats};
use crate::pprof::{self, symbolize::Symbolizer, PeriodInfo};
use crate::record::{self, recorder, report, sampler, stack, stats, Event};

/// Only one profiler runs at a time.
static RUNNING: AtomicBool = AtomicBool::new(false);
static NEXT_SESSION: AtomicU32 = AtomicU32::new(1);
/// Profile sequence numbers run on across sessions of one process.
static NEXT_SEQ: AtomicU64 = AtomicU64::new(0);

/// Entry point: `Profiler::builder().capture_pct(5.0).start()`.
#[derive(Debug)]
pub struct Profiler;

impl Profiler {
    /// A builder with the defaults (capture 1%, 64 frames, 60 s, local files).
    pub fn builder() -> ProfilerBuilder {
        ProfilerBuilder {
            settings: Settings::default(),
            exporter: None,
        }
    }
}

/// Configures and starts a profiler.
pub struct ProfilerBuilder {
    settings: Settings,
    exporter: Option<Box<dyn Export>>,
}

impl std::fmt::Debug for ProfilerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProfilerBuilder")
            .field("settings", &self.settings)
            .field("exporter", &self.exporter.as_ref().map(|e| e.describe()))
            .finish()
    }
}

impl ProfilerBuilder {
    /// Share of acquisitions sampled with a stack, 0 to 100 (default 1).
    /// At 100 every acquisition and release is recorded.
    pub fn capture_pct(mut self, pct: f64) -> Self {
        self.settings.capture_pct = pct;
        self
    }

    /// Deepest stack kept (default 64).
    pub fn max_frames(mut self, frames: usize) -> Self {
        self.settings.max_frames = frames;
        self
    }

    /// Period covered by each profile (default 60 s).
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.settings.flush_interval = interval;
        self
    }

    /// Writes profiles to `<prefix>.<pid>.<seq>.pprof`.
    pub fn output_pprof(mut self, prefix: impl Into<std::path::PathBuf>) -> Self {
        self.settings.output_pprof = Some(prefix.into());
        self
    }

    /// Sends profiles to `exporter` instead of local files.
    pub fn export(mut self, exporter: impl Export + 'static) -> Self {
        self.exporter = Some(Box::new(exporter));
        self
    }

    /// Capacity of the queue between locking threads and the recorder
    /// (default 16384 events). A full queue drops events and counts them.
    pub fn queue_capacity(mut self, events: usize) -> Self {
        self.settings.queue_capacity = events;
        self
    }

    /// The stack unwinder (default: frame pointers when detected).
    pub fn unwinder(mut self, unwinder: stack::Unwinder) -> Self {
        self.settings.unwinder = unwinder;
        self
    }

    /// Applies the `DD_PROFILING_*` variables to settings not set by hand
    /// yet: call it first, then override with builder methods. Bad values are
    /// returned and leave the default in place.
    pub fn with_env(mut self) -> (Self, Vec<ConfigError>) {
        let (settings, errors) = config::core_from_env(self.settings);
        self.settings = settings;
        (self, errors)
    }

    /// The settings as they stand.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Starts profiling. Fails if the settings are invalid or a profiler is
    /// already running in this process.
    pub fn start(self) -> Result<ProfilerHandle, StartError> {
        self.settings.validate()?;
        if RUNNING.compare_exchange(false, true, AcqRel, Acquire).is_err() {
            return Err(StartError::AlreadyRunning);
        }
        let settings = self.settings;
        let exporter = self.exporter.unwrap_or_else(|| {
            let prefix = settings
                .output_pprof
                .clone()
                .unwrap_or_else(FileExporter::default_prefix);
            Box::new(FileExporter::new(prefix))
        });
        let description = exporter.describe();

        install_fork_handler();
        let uses_frame_pointers = stack::select(settings.unwinder);
        let session = NEXT_SESSION.fetch_add(1, Relaxed).max(1);
        sampler::configure(settings.capture_pct);
        stats::reset_baseline();
        let events = recorder::open(session, settings.queue_capacity, settings.max_frames);
        let shared = Arc::new(Shared::default());
        let (control_tx, control_rx) = crossbeam_channel::bounded(4);
        let worker = Worker {
            settings: settings.clone(),
            exporter,
            events,
            control: control_rx,
            shared: Arc::clone(&shared),
            recorder: recorder::Recorder::default(),
            symbolizer: Symbolizer::default(),
            period_start: (SystemTime::now(), Instant::now()),
            dropped_seen: recorder::DROPPED.load(Relaxed),
            panics_seen: record::INTERNAL_PANICS.load(Relaxed),
        };
        let thread = std::thread::Builder::new()
            .name("lockprof".into())
            .spawn(move || worker.run())
            .map_err(|e| {
                recorder::close();
                RUNNING.store(false, Release);
                StartError::Thread(e)
            })?;
        // Sampling starts only once everything above is in place.
        sampler::SESSION.store(session, Release);
        log::debug!(
            "lockprof started: capture {}%, {} unwinder, output {}",
            settings.capture_pct,
            if uses_frame_pointers {
                "frame-pointer"
            } else {
                "backtrace"
            },
            description
        );
        Ok(ProfilerHandle {
            control: control_tx,
            thread: Some(thread),
            shared,
            description,
            uses_frame_pointers,
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
}

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
}

enum Control {
    Flush(Sender<()>),
    Stop(Sender<()>),
}

/// A running profiler. Stopping it, or dropping it, writes a last profile.
pub struct ProfilerHandle {
    control: Sender<Control>,
    thread: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
    description: String,
    uses_frame_pointers: bool,
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
    /// exporter is done with it.
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
        }
    }

    /// Stops sampling, exports a last profile and waits for the profiler
    /// thread. Returns the final counts.
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
        RUNNING.store(false, Release);
    }
}

impl Drop for ProfilerHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Worker {
    settings: Settings,
    exporter: Box<dyn Export>,
    events: Receiver<Event>,
    control: Receiver<Control>,
    shared: Arc<Shared>,
    recorder: recorder::Recorder,
    symbolizer: Symbolizer,
    period_start: (SystemTime, Instant),
    dropped_seen: u64,
    panics_seen: u64,
}

impl Worker {
    fn run(mut self) {
        // Nothing this thread does is ever recorded, whatever the exporter
        // or an allocator does.
        let outcome =
            sampler::enter(|| std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run_loop())));
        if !matches!(outcome, Some(Ok(()))) {
            // A bug in the profiler thread must not leave user threads
            // sampling into a queue nobody reads.
            sampler::SESSION.store(0, Release);
            recorder::close();
            log::error!("lockprof: the profiler thread failed; profiling stopped");
        }
    }

    fn run_loop(&mut self) {
        let mut deadline = Instant::now() + self.settings.flush_interval;
        loop {
            let timeout = deadline.saturating_duration_since(Instant::now());
            crossbeam_channel::select! {
                recv(self.events) -> event => {
                    if let Ok(event) = event {
                        self.recorder.record(event);
                    }
                }
                recv(self.control) -> msg => match msg {
                    Ok(Control::Flush(ack)) => {
                        self.drain();
                        self.flush();
                        deadline = Instant::now() + self.settings.flush_interval;
                        let _ = ack.send(());
                    }
                    Ok(Control::Stop(ack)) => {
                        self.stop();
                        let _ = ack.send(());
                        return;
                    }
                    Err(_) => {
                        self.stop();
                        return;
                    }
                },
                default(timeout) => {
                    self.flush();
                    deadline += self.settings.flush_interval;
                    if deadline < Instant::now() {
                        deadline = Instant::now() + self.settings.flush_interval;
                    }
                }
            }
        }
    }

    fn drain(&mut self) {
        while let Ok(event) = self.events.try_recv() {
            self.recorder.record(event);
        }
    }

    fn stop(&mut self) {
        sampler::SESSION.store(0, Release);
        recorder::close();
        self.drain();
        self.flush();
    }

    fn flush(&mut self) {
        let (samples, recorded) = self.recorder.take();
        let totals = stats::take_deltas();
        let dropped_now = recorder::DROPPED.load(Relaxed);
        let dropped = dropped_now.wrapping_sub(std::mem::replace(&mut self.dropped_seen, dropped_now));
        let panics_now = record::INTERNAL_PANICS.load(Relaxed);
        let panics = panics_now.wrapping_sub(std::mem::replace(&mut self.panics_seen, panics_now));
        self.shared.events_recorded.fetch_add(recorded, Relaxed);
        self.shared.events_dropped.fetch_add(dropped, Relaxed);

        let (start_wall, start_mono) = self.period_start;
        let end_wall = SystemTime::now();
        let duration = start_mono.elapsed();
        self.period_start = (end_wall, Instant::now());

        let pct = self.settings.capture_pct;
        let weighted = report::weigh(samples, &totals, pct);
        let mut comments = vec![format!(
            "lockprof {}: capture_pct={pct}",
            env!("CARGO_PKG_VERSION")
        )];
        comments.push(format!(
            "events recorded: {recorded}, dropped (queue full): {dropped}"
        ));
        if panics > 0 {
            comments.push(format!("internal panics caught: {panics}"));
        }
        let info = PeriodInfo {
            start_unix_ns: start_wall
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_nanos() as i64)
                .unwrap_or(0),
            duration_ns: duration.as_nanos() as i64,
            period: if pct > 0.0 {
                (100.0 / pct).round() as i64
            } else {
                0
            },
            max_frames: self.settings.max_frames,
            comments,
        };
        let profile = pprof::build(&weighted, &mut self.symbolizer, &info);
        let samples_written = profile.sample.len() as u64;
        let encoded = match pprof::gzip(&profile) {
            Ok(bytes) => bytes,
            Err(e) => {
                self.fail(ExportError::Other(format!("cannot compress profile: {e}")));
                return;
            }
        };
        let profile = EncodedProfile {
            gzipped_pprof: encoded,
            start: start_wall,
            end: end_wall,
            seq: NEXT_SEQ.fetch_add(1, Relaxed),
            stats: ProfileStats {
                events_recorded: recorded,
                events_dropped: dropped,
                samples: samples_written,
                internal_panics: panics,
            },
        };
        match self.exporter.export(&profile) {
            Ok(()) => {
                self.shared.profiles_exported.fetch_add(1, Relaxed);
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

/// In a forked child no profiler thread runs: stop sampling there at once, so
/// the child never touches the recorder's state (whose locks another thread of
/// the parent may have held at the fork), and let it start its own profiler.
fn install_fork_handler() {
    #[cfg(unix)]
    {
        extern "C" fn in_child() {
            sampler::SESSION.store(0, Relaxed);
            RUNNING.store(false, Relaxed);
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
