//! Starting a profiler from the environment alone, as Datadog's libraries
//! do, and saying why none started.

use super::{Profiler, ProfilerHandle, StartError};
use crate::config::{self, ConfigError};

/// Why [`try_start_from_env`] did not start a profiler.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotStarted {
    /// Lock profiling is off: `DD_PROFILING_ENABLED` is unset or false, or
    /// `DD_PROFILING_LOCK_ENABLED` is false.
    #[error(
        "lock profiling is off (DD_PROFILING_ENABLED unset or false, or DD_PROFILING_LOCK_ENABLED false)"
    )]
    Disabled,
    /// `DD_PROFILING_ENABLED` is not a boolean, so lock profiling is off.
    #[error("{0}; lock profiling is off")]
    Invalid(ConfigError),
    /// Lock profiling is on, and the profiler failed to start.
    #[error("the profiler did not start: {0}")]
    Failed(#[source] StartError),
}

/// Starts a profiler configured by the environment, as Datadog's libraries
/// do: only when `DD_PROFILING_ENABLED` is true and
/// `DD_PROFILING_LOCK_ENABLED` is not false. Bad values are logged and their
/// defaults used; the error says why no profiler runs.
///
/// ```no_run
/// match lockprof::try_start_from_env() {
///     Ok(profiler) => println!("profiling to {}", profiler.output()),
///     Err(lockprof::NotStarted::Disabled) => {}
///     Err(why) => eprintln!("lockprof: {why}"),
/// }
/// ```
pub fn try_start_from_env() -> Result<ProfilerHandle, NotStarted> {
    let (enabled, bad_lock_enabled) = config::lock_profiling_enabled().map_err(|e| {
        log::warn!("lockprof: {e}; using the default");
        NotStarted::Invalid(e)
    })?;
    if let Some(e) = bad_lock_enabled {
        log::warn!("lockprof: {e}; using the default");
    }
    if !enabled {
        return Err(NotStarted::Disabled);
    }
    // `start` applies the environment and logs its bad values.
    Profiler::builder().start().map_err(NotStarted::Failed)
}

/// [`try_start_from_env`], for those who need no reason: a failure to
/// start is logged, and `None` returned.
pub fn start_from_env() -> Option<ProfilerHandle> {
    match try_start_from_env() {
        Ok(handle) => Some(handle),
        Err(NotStarted::Failed(e)) => {
            log::error!("lockprof: profiler not started: {e}");
            None
        }
        Err(_) => None,
    }
}
