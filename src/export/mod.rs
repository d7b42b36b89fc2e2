//! Where finished profiles go. The profiler thread owns one [`Export`] and
//! hands it every profile; nothing here runs on a locking thread.

#[cfg(feature = "datadog")]
pub(crate) mod datadog;
mod file;
pub(crate) mod output;

#[cfg(feature = "datadog")]
pub use datadog::settings::{
    ApiKey, DatadogSettings, DEFAULT_AGENT_SOCKET, DEFAULT_API_TIMEOUT, DEFAULT_SITE,
};
#[cfg(feature = "datadog")]
pub use datadog::UploadStats;
pub use file::FileExporter;

use std::time::SystemTime;

/// One finished profile: a gzip'd pprof and what it covers.
#[derive(Clone, Debug)]
pub struct EncodedProfile {
    /// The gzip'd pprof protobuf.
    pub gzipped_pprof: Vec<u8>,
    /// Start of the period the profile covers.
    pub start: SystemTime,
    /// End of the period.
    pub end: SystemTime,
    /// 0 for the first profile of the process, then 1, 2, …
    pub seq: u64,
    /// Figures about the period, for diagnostics.
    pub stats: ProfileStats,
    /// Requests served in the period, per endpoint, by name: the local
    /// root spans that ended as requests (feature `opentelemetry`; empty
    /// without it). Uploads send them as `event.json`'s `endpoint_counts`.
    pub endpoint_counts: Vec<(String, u64)>,
}

/// Figures about one profile period.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProfileStats {
    /// Sampled events that reached the recorder.
    pub events_recorded: u64,
    /// Sampled events dropped because the recorder's queue was full.
    pub events_dropped: u64,
    /// Samples written to the profile.
    pub samples: u64,
    /// Panics caught inside the profiler on user threads.
    pub internal_panics: u64,
}

/// A destination for profiles: local files, an agent (feature `datadog`),
/// several at once.
///
/// Called on the profiler's own thread, one profile at a time; may block on
/// I/O, never on a lock the user's threads take.
pub trait Export: Send {
    /// Delivers one profile.
    fn export(&mut self, profile: &EncodedProfile) -> Result<(), ExportError>;

    /// A short description for logs and `Debug` (`files under /tmp/x`).
    fn describe(&self) -> String;

    /// Called once when the profiler stops, after the last profile: finish
    /// pending deliveries, waiting a bounded time. Does nothing by default.
    fn finish(&mut self) {}

    /// The local file the last successful [`export`](Self::export) wrote, if
    /// it wrote one (`None` by default): the profiler lists these in
    /// [`ProfilerStats::files`](crate::ProfilerStats::files).
    fn last_file(&self) -> Option<&std::path::Path> {
        None
    }
}

/// Why a profile could not be delivered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// Writing a profile file failed.
    #[error("cannot write profile to {path}: {source}")]
    File {
        /// The file that could not be written.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The profile could not be compressed (lockprof's own exporters never
    /// see it: the profiler reports it in their place).
    #[error("cannot compress profile: {0}")]
    Encode(#[source] std::io::Error),
    /// Any other failure, described.
    #[error("{0}")]
    Other(String),
}
