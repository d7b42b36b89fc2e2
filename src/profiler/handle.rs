//! The handle of a running profiler: flush now, read its counts, stop it.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::Sender;

use super::worker::{Control, Shared, Spawned};
#[cfg(feature = "datadog")]
use crate::export::datadog::{UploadCounters, UploadStats};
use crate::record::session::Unwinder;

/// What a running profiler has done so far.
///
/// `#[non_exhaustive]`: the `upload` field exists only with the `datadog`
/// feature, and turning a feature on must not break code that names the
/// others.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
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
    #[cfg(feature = "datadog")]
    pub upload: Option<UploadStats>,
    /// The local files written so far, oldest first (the newest 64), for
    /// output to files: the paths to open with `lockprof` or `go tool pprof`.
    pub files: Vec<std::path::PathBuf>,
}

/// A running profiler. Stopping it, or dropping it, writes a last profile.
pub struct ProfilerHandle {
    /// Dropped by hand: a forked child must not touch the channel, whose
    /// internal lock the parent's profiler thread may have held at the fork.
    control: std::mem::ManuallyDrop<Sender<Control>>,
    thread: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
    #[cfg(feature = "datadog")]
    upload: Option<UploadCounters>,
    #[cfg(feature = "http")]
    http_addr: Option<std::net::SocketAddr>,
    description: String,
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
    pub(super) fn new(
        spawned: Spawned,
        #[cfg(feature = "datadog")] upload: Option<UploadCounters>,
        #[cfg(feature = "http")] http_addr: Option<std::net::SocketAddr>,
        description: String,
        unwinder: Unwinder,
    ) -> ProfilerHandle {
        ProfilerHandle {
            control: std::mem::ManuallyDrop::new(spawned.control),
            thread: Some(spawned.thread),
            shared: spawned.shared,
            #[cfg(feature = "datadog")]
            upload,
            #[cfg(feature = "http")]
            http_addr,
            description,
            unwinder,
            pid: std::process::id(),
        }
    }

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
        self.unwinder == Unwinder::FramePointers
    }

    /// The unwinder chosen at start: [`Unwinder::Auto`]
    /// resolved to the one in use, e.g. `EhFrame` in a build without frame
    /// pointers.
    pub fn unwinder(&self) -> Unwinder {
        self.unwinder
    }

    /// Where the on-demand endpoint listens (feature `http`; `None` when
    /// [`ProfilerBuilder::serve`](super::ProfilerBuilder::serve) was not
    /// asked): its port, when 0 was asked. The endpoint stops with the
    /// profiler.
    #[cfg(feature = "http")]
    pub fn http_addr(&self) -> Option<std::net::SocketAddr> {
        self.http_addr
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
            #[cfg(feature = "datadog")]
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
