//! Profiler settings: defaults, validation, and the `DD_PROFILING_*`
//! environment variables.

use std::path::PathBuf;
use std::time::Duration;

use crate::record::session::{SessionSettings, Unwinder};

/// Default share of acquisitions sampled, in percent.
pub const DEFAULT_CAPTURE_PCT: f64 = 1.0;
/// Default deepest stack kept.
pub const DEFAULT_MAX_FRAMES: usize = 64;
/// Default period of one profile.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(60);
/// Default capacity of each thread's queue of sampled events for the
/// recorder: 4096 events, 256 KiB.
pub const DEFAULT_QUEUE_CAPACITY: usize = 4 * 1024;

/// A setting that could not be used: which one, the value, and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{name}={value:?} is not valid: {reason}")]
pub struct ConfigError {
    /// The environment variable or builder setting.
    pub name: String,
    /// The value it was given (lossily converted if not UTF-8).
    pub value: String,
    /// What a valid value looks like.
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(name: &str, value: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            name: name.to_owned(),
            value: value.into(),
            reason: reason.into(),
        }
    }
}

/// The effective core settings of a profiler.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Share of acquisitions sampled with a stack, in percent: 0, or
    /// [`MIN_CAPTURE_PCT`] to 100.
    pub capture_pct: f64,
    /// Deepest stack kept; deeper ones are cut with a `<N frames omitted>` frame.
    pub max_frames: usize,
    /// Period of one profile.
    pub flush_interval: Duration,
    /// Where local files go (`<prefix>.<pid>.<seq>.pprof`), when set.
    pub output_pprof: Option<PathBuf>,
    /// Capacity of each thread's queue of sampled events (64 bytes each); a
    /// full queue drops and counts.
    pub queue_capacity: usize,
    /// The stack unwinder.
    pub unwinder: Unwinder,
    /// The sampling budget: at most this many sampled acquisitions per second
    /// of each thread's CPU time (Linux; wall time elsewhere); beyond it the
    /// thread samples less often and weighs each sample more, so totals stay
    /// unbiased. `Some(0)` turns the budget
    /// off; `None` is the default: [`DEFAULT_MAX_SAMPLES_PER_SEC`] below
    /// capture 100 %, no budget at 100 % (every acquisition recorded).
    pub max_samples_per_sec: Option<u64>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            capture_pct: DEFAULT_CAPTURE_PCT,
            max_frames: DEFAULT_MAX_FRAMES,
            flush_interval: DEFAULT_FLUSH_INTERVAL,
            output_pprof: None,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            unwinder: Unwinder::Auto,
            max_samples_per_sec: None,
        }
    }
}

impl Settings {
    /// The budget in force: sampled acquisitions per second of a thread's
    /// CPU time, 0 for none.
    pub fn sampling_budget(&self) -> u64 {
        match self.max_samples_per_sec {
            Some(n) => n,
            None if self.capture_pct >= 100.0 => 0,
            None => DEFAULT_MAX_SAMPLES_PER_SEC,
        }
    }

    /// What the recording core needs of these settings.
    pub(crate) fn session(&self) -> SessionSettings {
        SessionSettings {
            capture_pct: self.capture_pct,
            max_samples_per_sec: self.sampling_budget(),
            max_frames: self.max_frames,
            queue_capacity: self.queue_capacity,
            unwinder: self.unwinder,
        }
    }

    /// Checks every value against its range; the first bad one is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_capture_pct(
            "capture_pct",
            &format!("{:?}", self.capture_pct),
            self.capture_pct,
        )?;
        if !(1..=MAX_MAX_FRAMES).contains(&self.max_frames) {
            return Err(ConfigError::new(
                "max_frames",
                self.max_frames.to_string(),
                format!("expected 1 to {MAX_MAX_FRAMES}"),
            ));
        }
        if !(MIN_FLUSH_INTERVAL..=MAX_FLUSH_INTERVAL).contains(&self.flush_interval) {
            return Err(ConfigError::new(
                "flush_interval",
                format!("{:?}", self.flush_interval),
                "expected 100ms to 1 day (86400s)",
            ));
        }
        if !(1..=MAX_QUEUE_CAPACITY).contains(&self.queue_capacity) {
            return Err(ConfigError::new(
                "queue_capacity",
                self.queue_capacity.to_string(),
                format!("expected 1 to {MAX_QUEUE_CAPACITY} events (64 bytes each, per thread)"),
            ));
        }
        Ok(())
    }
}

const MAX_MAX_FRAMES: usize = 4096;

/// The default sampling budget, per thread: sampled acquisitions per second
/// of the thread's CPU time. At about 1 µs for a sampled acquisition and its
/// release (two stack walks without frame pointers), it bounds the
/// profiler's share of a thread's CPU to about 1 %, whatever the lock rate
/// and however many threads share a core, and still gives hundreds of
/// thousands of samples per minute and busy thread.
pub const DEFAULT_MAX_SAMPLES_PER_SEC: u64 = 10_000;

/// The shortest flush interval: shorter ones would spend the profiler thread
/// on writing profiles rather than on recording.
pub const MIN_FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// The longest flush interval: one day.
pub const MAX_FLUSH_INTERVAL: Duration = Duration::from_secs(86_400);
/// The largest per-thread queue: 2^20 events, a 64 MiB ring per recording
/// thread.
pub const MAX_QUEUE_CAPACITY: usize = 1 << 20;
/// The smallest capture percentage above 0: one acquisition in 10^8. Below
/// it the sampling gaps (at most 2^32 acquisitions) could no longer follow
/// the rate, and the scaled counts would leave any integer range.
pub const MIN_CAPTURE_PCT: f64 = 1e-6;

/// Checks a capture percentage; `given` is the value as the user wrote it,
/// quoted by the error.
fn check_capture_pct(name: &str, given: &str, pct: f64) -> Result<f64, ConfigError> {
    if pct == 0.0 || (MIN_CAPTURE_PCT..=100.0).contains(&pct) {
        Ok(pct)
    } else {
        Err(ConfigError::new(name, given, CAPTURE_PCT_RANGE))
    }
}

const CAPTURE_PCT_RANGE: &str = "expected 0, or a percentage from 0.000001 to 100";

/// Reads an environment variable, trimmed: `Ok(None)` if unset, empty or
/// blank.
pub(crate) fn env_var(name: &str) -> Result<Option<String>, ConfigError> {
    match std::env::var_os(name) {
        None => Ok(None),
        Some(v) => match v.into_string() {
            // Blank is unset: a blank path would write to the working
            // directory, a blank number is no choice at all.
            Ok(s) if s.trim().is_empty() => Ok(None),
            Ok(s) => Ok(Some(s.trim().to_owned())),
            Err(v) => Err(ConfigError::new(name, v.to_string_lossy(), "not valid UTF-8")),
        },
    }
}

/// Reads a boolean environment variable as Datadog's libraries do, and as
/// lockprof reads its own (`DD_PROFILING_ENABLED`, `DD_PROFILING_AGENTLESS`,
/// …): `true`, `1`, `yes`, `on` or `false`, `0`, `no`, `off`, in any case,
/// blanks around it ignored. `Ok(None)` when the variable is unset or blank;
/// the error names the variable and quotes its value.
///
/// ```
/// std::env::set_var("MY_APP_PROFILE", " Yes");
/// assert_eq!(lockprof::env_bool("MY_APP_PROFILE"), Ok(Some(true)));
/// std::env::set_var("MY_APP_PROFILE", "maybe");
/// let err = lockprof::env_bool("MY_APP_PROFILE").unwrap_err();
/// assert_eq!(err.to_string(), r#"MY_APP_PROFILE="maybe" is not valid: expected true or false"#);
/// assert_eq!(lockprof::env_bool("MY_APP_UNSET"), Ok(None));
/// ```
pub fn env_bool(name: &str) -> Result<Option<bool>, ConfigError> {
    env_var(name)?.map(|v| parse_bool(name, &v)).transpose()
}

/// Parses a boolean as Datadog's libraries do: the rule of [`env_bool`].
pub(crate) fn parse_bool(name: &str, value: &str) -> Result<bool, ConfigError> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::new(name, value, "expected true or false")),
    }
}

/// The core settings a program set in code, which the environment leaves
/// alone.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct SetInCode {
    pub(crate) capture_pct: bool,
    pub(crate) max_samples_per_sec: bool,
    pub(crate) max_frames: bool,
    pub(crate) flush_interval: bool,
    pub(crate) output_pprof: bool,
}

/// Reads the core `DD_PROFILING_*` variables over `base`, except for the
/// settings set in code. Every bad value is reported (those of settings set
/// in code too) and leaves its setting as it was.
pub(crate) fn core_from_env(base: Settings, in_code: SetInCode) -> (Settings, Vec<ConfigError>) {
    let (mut s, errors) = read_core_env(base.clone());
    if in_code.capture_pct {
        s.capture_pct = base.capture_pct;
    }
    if in_code.max_samples_per_sec {
        s.max_samples_per_sec = base.max_samples_per_sec;
    }
    if in_code.max_frames {
        s.max_frames = base.max_frames;
    }
    if in_code.flush_interval {
        s.flush_interval = base.flush_interval;
    }
    if in_code.output_pprof {
        s.output_pprof = base.output_pprof;
    }
    (s, errors)
}

/// Every core `DD_PROFILING_*` variable over `base`.
fn read_core_env(base: Settings) -> (Settings, Vec<ConfigError>) {
    let mut s = base;
    let mut errors = Vec::new();
    let mut read = |name: &str, apply: &mut dyn FnMut(&str) -> Result<(), ConfigError>| match env_var(name) {
        Ok(Some(v)) => {
            if let Err(e) = apply(&v) {
                errors.push(e);
            }
        }
        Ok(None) => {}
        Err(e) => errors.push(e),
    };
    read("DD_PROFILING_CAPTURE_PCT", &mut |v| {
        let pct = v
            .parse::<f64>()
            .map_err(|_| ConfigError::new("DD_PROFILING_CAPTURE_PCT", v, CAPTURE_PCT_RANGE))?;
        s.capture_pct = check_capture_pct("DD_PROFILING_CAPTURE_PCT", v, pct)?;
        Ok(())
    });
    read("DD_PROFILING_MAX_SAMPLES_PER_SEC", &mut |v| {
        let n = v.parse::<u64>().map_err(|_| {
            ConfigError::new(
                "DD_PROFILING_MAX_SAMPLES_PER_SEC",
                v,
                "expected a whole number of sampled acquisitions per second and thread (0: no budget)",
            )
        })?;
        s.max_samples_per_sec = Some(n);
        Ok(())
    });
    read("DD_PROFILING_MAX_FRAMES", &mut |v| {
        match v.parse::<usize>() {
            Ok(n) if (1..=MAX_MAX_FRAMES).contains(&n) => s.max_frames = n,
            _ => {
                return Err(ConfigError::new(
                    "DD_PROFILING_MAX_FRAMES",
                    v,
                    format!("expected a whole number from 1 to {MAX_MAX_FRAMES}"),
                ))
            }
        }
        Ok(())
    });
    read("DD_PROFILING_UPLOAD_INTERVAL", &mut |v| {
        let min = MIN_FLUSH_INTERVAL.as_secs_f64();
        let max = MAX_FLUSH_INTERVAL.as_secs_f64();
        match v.parse::<f64>() {
            Ok(secs) if (min..=max).contains(&secs) => s.flush_interval = Duration::from_secs_f64(secs),
            _ => {
                return Err(ConfigError::new(
                    "DD_PROFILING_UPLOAD_INTERVAL",
                    v,
                    format!("expected seconds, from {min} to {max}"),
                ))
            }
        }
        Ok(())
    });
    read("DD_PROFILING_OUTPUT_PPROF", &mut |v| {
        s.output_pprof = Some(PathBuf::from(v));
        Ok(())
    });
    (s, errors)
}

/// Whether the environment turns lock profiling on: `DD_PROFILING_ENABLED`
/// true and `DD_PROFILING_LOCK_ENABLED` not false. A bad
/// `DD_PROFILING_ENABLED` is the error (profiling stays off, its default); a
/// bad `DD_PROFILING_LOCK_ENABLED` is returned beside its default, on.
pub(crate) fn lock_profiling_enabled() -> Result<(bool, Option<ConfigError>), ConfigError> {
    if !env_bool("DD_PROFILING_ENABLED")?.unwrap_or(false) {
        return Ok((false, None));
    }
    Ok(match env_bool("DD_PROFILING_LOCK_ENABLED") {
        Ok(lock) => (lock.unwrap_or(true), None),
        Err(e) => (true, Some(e)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_are_read_like_datadog_libraries() {
        assert_eq!(parse_bool("X", "TRUE"), Ok(true));
        assert_eq!(parse_bool("X", "0"), Ok(false));
        let err = parse_bool("DD_PROFILING_ENABLED", "maybe").unwrap_err();
        assert_eq!(
            err.to_string(),
            "DD_PROFILING_ENABLED=\"maybe\" is not valid: expected true or false"
        );
    }

    #[test]
    fn settings_outside_their_range_are_refused() {
        let bad = Settings {
            capture_pct: 150.0,
            ..Settings::default()
        };
        assert_eq!(bad.validate().unwrap_err().name, "capture_pct");
        let nan = Settings {
            capture_pct: f64::NAN,
            ..Settings::default()
        };
        assert!(nan.validate().is_err());
        assert!(Settings::default().validate().is_ok());
    }

    #[test]
    fn extreme_builder_values_are_refused_naming_setting_and_value() {
        let cases = [
            (
                Settings {
                    queue_capacity: 1 << 40,
                    ..Settings::default()
                },
                "queue_capacity",
                "1099511627776",
            ),
            (
                Settings {
                    queue_capacity: usize::MAX,
                    ..Settings::default()
                },
                "queue_capacity",
                "18446744073709551615",
            ),
            (
                Settings {
                    flush_interval: Duration::MAX,
                    ..Settings::default()
                },
                "flush_interval",
                "18446744073709551615.999999999s",
            ),
            (
                Settings {
                    flush_interval: Duration::from_nanos(1),
                    ..Settings::default()
                },
                "flush_interval",
                "1ns",
            ),
            (
                Settings {
                    capture_pct: 1e-20,
                    ..Settings::default()
                },
                "capture_pct",
                "1e-20",
            ),
            (
                Settings {
                    capture_pct: f64::MIN_POSITIVE,
                    ..Settings::default()
                },
                "capture_pct",
                "2.2250738585072014e-308",
            ),
        ];
        for (settings, name, value) in cases {
            let err = settings.validate().unwrap_err();
            assert_eq!((err.name.as_str(), err.value.as_str()), (name, value), "{err}");
        }
        let edges = Settings {
            capture_pct: MIN_CAPTURE_PCT,
            flush_interval: MIN_FLUSH_INTERVAL,
            queue_capacity: MAX_QUEUE_CAPACITY,
            ..Settings::default()
        };
        assert_eq!(edges.validate(), Ok(()));
        let edges = Settings {
            capture_pct: 0.0,
            flush_interval: MAX_FLUSH_INTERVAL,
            queue_capacity: 1,
            ..Settings::default()
        };
        assert_eq!(edges.validate(), Ok(()));
    }
}
