//! What every scenario measures, independently of the profiler, and the
//! report it prints and writes.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// An acquisition that waited longer than this counts as a contention.
pub const CONTENTION_THRESHOLD: Duration = Duration::from_millis(1);

/// One thread's counts; threads keep their own and they are merged at join,
/// so measuring takes no shared lock.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ThreadStats {
    /// Completed operations.
    pub operations: u64,
    /// Sum of the measured acquire times.
    pub acquire_total: Duration,
    /// Longest measured acquire time.
    pub acquire_max: Duration,
    /// Acquisitions that waited longer than [`CONTENTION_THRESHOLD`].
    pub contentions: u64,
    /// Timeouts and other failures.
    pub errors: u64,
}

impl ThreadStats {
    /// Records the time an acquisition took.
    pub fn acquire_time(&mut self, waited: Duration) {
        self.acquire_total += waited;
        self.acquire_max = self.acquire_max.max(waited);
        if waited > CONTENTION_THRESHOLD {
            self.contentions += 1;
        }
    }

    /// Records one completed operation.
    pub fn operation(&mut self) {
        self.operations += 1;
    }

    /// An acquisition that succeeded after `waited`: one operation.
    pub fn acquired(&mut self, waited: Duration) {
        self.acquire_time(waited);
        self.operation();
    }

    /// A timeout or other failure.
    pub fn error(&mut self) {
        self.errors += 1;
    }

    /// Adds another thread's counts.
    pub fn merge(&mut self, other: &ThreadStats) {
        self.operations += other.operations;
        self.acquire_total += other.acquire_total;
        self.acquire_max = self.acquire_max.max(other.acquire_max);
        self.contentions += other.contentions;
        self.errors += other.errors;
    }
}

/// The result of one scenario run: printed as the report lines, written as
/// `--output` JSON, read back by the runner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioResult {
    /// The scenario type (`high_contention`, …).
    pub scenario: String,
    /// Wall time of the run, seconds.
    pub duration_s: f64,
    /// Completed operations, all threads.
    pub total_operations: u64,
    /// `total_operations / duration_s`.
    pub operations_per_sec: f64,
    /// Mean measured acquire time per operation, milliseconds.
    pub avg_acquire_ms: f64,
    /// Longest measured acquire time, milliseconds.
    pub max_acquire_ms: f64,
    /// Acquisitions that waited more than 1 ms.
    pub contentions: u64,
    /// Timeouts and failures.
    pub errors: u64,
    /// Whether the profiler ran.
    pub profiling: bool,
    /// Where the profiler's output went, if it ran.
    pub profile_output: Option<String>,
    /// The profile labels of the locks the scenario used.
    pub lock_names: Vec<String>,
    /// The parameters in effect, defaults included.
    pub parameters: BTreeMap<String, serde_json::Value>,
}

impl ScenarioResult {
    /// Builds the result from merged counts.
    pub fn new(scenario: &str, duration: Duration, stats: &ThreadStats) -> Self {
        let secs = duration.as_secs_f64();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        ScenarioResult {
            scenario: scenario.to_owned(),
            duration_s: secs,
            total_operations: stats.operations,
            operations_per_sec: if secs > 0.0 {
                stats.operations as f64 / secs
            } else {
                0.0
            },
            avg_acquire_ms: ms(stats.acquire_total) / stats.operations.max(1) as f64,
            max_acquire_ms: ms(stats.acquire_max),
            contentions: stats.contentions,
            errors: stats.errors,
            profiling: false,
            profile_output: None,
            lock_names: Vec::new(),
            parameters: BTreeMap::new(),
        }
    }
}

/// The report lines, exactly as the Python suite prints them.
impl fmt::Display for ScenarioResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Scenario: {}", self.scenario)?;
        writeln!(f, "Duration: {:.2}s", self.duration_s)?;
        writeln!(f, "Total operations: {}", self.total_operations)?;
        writeln!(f, "Operations/sec: {:.2}", self.operations_per_sec)?;
        writeln!(f, "Avg acquire time: {:.3}ms", self.avg_acquire_ms)?;
        writeln!(f, "Max acquire time: {:.3}ms", self.max_acquire_ms)?;
        writeln!(f, "Contentions: {}", self.contentions)?;
        write!(f, "Errors: {}", self.errors)
    }
}
