//! The profiler: its builder (the Datadog settings in `datadog.rs`), which
//! starts the profiler thread (`worker.rs`) and returns the handle that
//! stops it (`handle.rs`); or the environment alone starts it (`from_env.rs`).

#[cfg(feature = "datadog")]
mod datadog;
mod from_env;
mod handle;
#[cfg(feature = "http")]
mod on_demand;
mod worker;

pub use from_env::{start_from_env, try_start_from_env, NotStarted};
pub use handle::{ProfilerHandle, ProfilerStats};

use std::time::Duration;

use crate::config::{self, ConfigError, SetInCode, Settings};
#[cfg(feature = "datadog")]
use crate::export::datadog::settings::DatadogSettings;
use crate::export::{output, Export};
use crate::record::session::{Claim, Session, Unwinder};
#[cfg(feature = "http")]
use crate::serve::ServeSettings;

/// Entry point: `Profiler::builder().capture_pct(5.0).start()`.
#[derive(Debug)]
pub struct Profiler;

impl Profiler {
    /// A builder with the defaults: capture 1%, 64 frames, 60 s; with the
    /// `datadog` feature (on by default), uploads when a Datadog agent is
    /// found and local files otherwise (see `ProfilerBuilder::upload`);
    /// without it, local files.
    pub fn builder() -> ProfilerBuilder {
        ProfilerBuilder {
            settings: Settings::default(),
            #[cfg(feature = "datadog")]
            datadog: DatadogSettings::default(),
            #[cfg(feature = "datadog")]
            upload: None,
            in_code: SetInCode::default(),
            apply_env: true,
            #[cfg(feature = "http")]
            serve: ServeSettings::default(),
            exporter: None,
        }
    }
}

/// Configures and starts a profiler.
///
/// As in Datadog's libraries, the environment configures what the code does
/// not: [`start`](Self::start) applies the `DD_*` variables to every setting
/// no method of the builder set (so an operator can redirect the output or
/// change the capture without a rebuild), and settings made with its methods
/// win over the environment, whatever the order of the calls.
/// [`ignore_env`](Self::ignore_env) leaves the environment out.
pub struct ProfilerBuilder {
    settings: Settings,
    #[cfg(feature = "datadog")]
    datadog: DatadogSettings,
    #[cfg(feature = "datadog")]
    upload: Option<bool>,
    in_code: SetInCode,
    /// Whether [`start`](Self::start) applies the environment: not after
    /// [`with_env`](Self::with_env) (done) or [`ignore_env`](Self::ignore_env).
    apply_env: bool,
    #[cfg(feature = "http")]
    serve: ServeSettings,
    exporter: Option<Box<dyn Export>>,
}

impl std::fmt::Debug for ProfilerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("ProfilerBuilder");
        d.field("settings", &self.settings);
        #[cfg(feature = "datadog")]
        d.field("datadog", &self.datadog).field("upload", &self.upload);
        #[cfg(feature = "http")]
        d.field("serve", &self.serve);
        d.field("exporter", &self.exporter.as_ref().map(|e| e.describe()))
            .finish()
    }
}

impl ProfilerBuilder {
    /// Share of acquisitions sampled with a stack, in percent: 0, or
    /// 0.000001 to 100 (default 1). At 100 every acquisition and release is
    /// recorded.
    pub fn capture_pct(mut self, pct: f64) -> Self {
        self.settings.capture_pct = pct;
        self.in_code.capture_pct = true;
        self
    }

    /// The sampling budget: at most `per_second` sampled acquisitions per
    /// second of each thread's CPU time (wall time where that cannot be
    /// read; default 10,000 below capture 100 %, none at 100 %;
    /// `DD_PROFILING_MAX_SAMPLES_PER_SEC`; 0 turns it off). A thread
    /// that would sample more samples less often and weighs each sample
    /// more, so that counts, waits and holds stay unbiased estimates while
    /// the profiler's cost stays bounded however fast the locks are taken.
    pub fn max_samples_per_sec(mut self, per_second: u64) -> Self {
        self.settings.max_samples_per_sec = Some(per_second);
        self.in_code.max_samples_per_sec = true;
        self
    }

    /// Deepest stack kept, 1 to 4096 (default 64).
    pub fn max_frames(mut self, frames: usize) -> Self {
        self.settings.max_frames = frames;
        self.in_code.max_frames = true;
        self
    }

    /// Period covered by each profile, and so the upload interval: 100 ms to
    /// a day (default 60 s; `DD_PROFILING_UPLOAD_INTERVAL`, in seconds).
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.settings.flush_interval = interval;
        self.in_code.flush_interval = true;
        self
    }

    /// Writes profiles to `<prefix>.<pid>.<seq>.pprof` instead of uploading
    /// them (`DD_PROFILING_OUTPUT_PPROF`); a prefix ending in a separator or
    /// naming an existing directory writes
    /// `<dir>/<executable>.<pid>.<seq>.pprof`.
    pub fn output_pprof(mut self, prefix: impl Into<std::path::PathBuf>) -> Self {
        self.settings.output_pprof = Some(prefix.into());
        self.in_code.output_pprof = true;
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

    /// Applies the `DD_*` variables now, to every setting not set by a
    /// builder method, before or after this call, and returns the bad
    /// values, which leave the default in place. [`start`](Self::start)
    /// does the same, logging the bad values, unless this was called (or
    /// [`ignore_env`](Self::ignore_env)): call it to see the errors.
    pub fn with_env(mut self) -> (Self, Vec<ConfigError>) {
        self.apply_env = false;
        let errors;
        (self.settings, errors) = config::core_from_env(self.settings, self.in_code);
        #[cfg(feature = "datadog")]
        let errors: Vec<ConfigError> = errors.into_iter().chain(self.datadog.fill_from_env()).collect();
        #[cfg(feature = "http")]
        let errors = errors.into_iter().chain(self.serve.fill_from_env()).collect();
        (self, errors)
    }

    /// Takes no setting from the environment: only this builder's methods
    /// and the defaults count (tests, and programs that configure lockprof
    /// from their own configuration).
    pub fn ignore_env(mut self) -> Self {
        self.apply_env = false;
        self
    }

    /// The settings as they stand (before [`start`](Self::start) applies
    /// the environment).
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Applies the environment (see [`ProfilerBuilder`]; a bad value is
    /// logged through `log` and its default kept), then starts profiling.
    /// Fails if a setting made by a method is invalid or a profiler is
    /// already running in this process.
    pub fn start(mut self) -> Result<ProfilerHandle, StartError> {
        if self.apply_env {
            let errors;
            (self, errors) = self.with_env();
            for e in &errors {
                log::warn!("lockprof: {e}; using the default");
            }
        }
        self.settings.validate()?;
        #[cfg(feature = "http")]
        let serve_at = self.serve.socket_addr("serve")?;
        let claim = Claim::take().ok_or(StartError::AlreadyRunning)?;
        let chosen = output::open(output::Request {
            settings: &self.settings,
            #[cfg(feature = "datadog")]
            datadog: &self.datadog,
            #[cfg(feature = "datadog")]
            upload: self.upload,
            exporter: self.exporter,
        })?;
        let exporter = chosen.exporter;
        let settings = self.settings;
        let description = exporter.describe();
        // Bound before the session opens: a port in use fails the start.
        #[cfg(feature = "http")]
        let on_demand = match serve_at {
            Some(addr) => {
                let (server, asks) =
                    crate::serve::Server::start(addr).map_err(|source| StartError::Serve { addr, source })?;
                Some(on_demand::OnDemand::new(server, asks))
            }
            None => None,
        };
        #[cfg(feature = "http")]
        let serving = on_demand.as_ref().map(on_demand::OnDemand::addr);
        let (session, sampling) = Session::open(claim, &settings.session());
        let unwinder = session.unwinder();
        let spawned = worker::spawn(
            session,
            exporter,
            settings.flush_interval,
            #[cfg(feature = "http")]
            on_demand,
        )
        .map_err(StartError::Thread)?;
        // Sampling starts only once everything above is in place.
        sampling.start();
        log::debug!(
            "lockprof started: capture {}%, {:?} unwinder, output {}",
            settings.capture_pct,
            unwinder,
            description
        );
        #[cfg(feature = "http")]
        if let Some(addr) = serving {
            log::debug!(
                "lockprof: on-demand profiles at http://{addr}{}",
                crate::serve::PATH
            );
        }
        Ok(ProfilerHandle::new(
            spawned,
            #[cfg(feature = "datadog")]
            chosen.upload,
            #[cfg(feature = "http")]
            serving,
            description,
            unwinder,
        ))
    }
}

/// The on-demand endpoint (feature `http`).
#[cfg(feature = "http")]
impl ProfilerBuilder {
    /// Serves on-demand lock profiles over HTTP at `addr`, an IP address and
    /// port (`DD_PROFILING_LOCK_SERVE`): `GET /debug/pprof/lock?seconds=N`
    /// answers with a profile of the next N seconds (1 to
    /// [`MAX_WINDOW_SECONDS`](crate::MAX_WINDOW_SECONDS)), and
    /// `GET /debug/pprof/lock` with everything since the profiler started,
    /// both gzip'd pprof as the files are: `go tool pprof
    /// http://127.0.0.1:6061/debug/pprof/lock?seconds=30`, or `lockprof top`
    /// with the same URL. The periodic profiles are unaffected.
    ///
    /// The endpoint has no authentication: an address other than loopback
    /// (`127.0.0.1`, `[::1]`, `localhost`) is refused unless
    /// [`serve_non_loopback`](Self::serve_non_loopback) allows it. Port 0
    /// picks a free port: [`ProfilerHandle::http_addr`] tells which.
    /// [`start`](Self::start) fails if the address is malformed or cannot be
    /// bound.
    pub fn serve(mut self, addr: impl Into<String>) -> Self {
        self.serve.addr = Some(addr.into());
        self
    }

    /// Allows [`serve`](Self::serve) on an address other than loopback
    /// (`DD_PROFILING_LOCK_SERVE_NON_LOOPBACK`; default false). Anyone who
    /// reaches the port then reads your lock names and call stacks, and can
    /// make the profiler encode profiles: put it behind a firewall.
    pub fn serve_non_loopback(mut self, allow: bool) -> Self {
        self.serve.non_loopback = Some(allow);
        self
    }

    /// The endpoint's settings as they stand.
    pub fn serve_settings(&self) -> &ServeSettings {
        &self.serve
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
    /// The on-demand endpoint could not listen on its address (feature
    /// `http`).
    #[cfg(feature = "http")]
    #[error("cannot serve on-demand profiles at {addr}: {source}")]
    Serve {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// Why: the address is in use, say.
        #[source]
        source: std::io::Error,
    },
}
