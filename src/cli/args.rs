//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::report::By;

const EXAMPLES: &str = "\
Inputs:
  PROFILE is a file (gzip'd, zstd'd or raw pprof), a directory (its newest
  profile; all of them with --all), or a prefix as given to
  DD_PROFILING_OUTPUT_PPROF (files <prefix>.<pid>.<seq>[.pprof]; newest, or
  all with --all), or the http:// URL of a running program's on-demand
  endpoint (lockprof's feature `http`; ?seconds=N: the next N seconds).
  Several profiles are merged, except by `top`, which shows a row per run
  (<prefix>.<pid>: one process) and lock, with a RUN column, when they come
  from several runs (--merge: merged).

Examples:
  lockprof top /tmp/lockprof/app                       newest profile of program app
  lockprof top -n 5 --by hold results/profiles/        newest in a directory, by hold time
  lockprof top --all results/profiles/                 every run's locks, a RUN column
  lockprof top --all --merge --json /tmp/lockprof/app  app's profiles merged, as JSON
  lockprof top http://127.0.0.1:6061/debug/pprof/lock?seconds=5
                                                       the next 5 seconds of a running program
  lockprof stacks --lock session_lock app.1234.0.pprof
  lockprof names --expect queue,session_lock app.1234.0.pprof
  lockprof flamegraph --by wait -o wait.svg /tmp/lockprof/app
  lockprof blame --lock session_lock app.1234.0.pprof  who held it while others waited
  lockprof diff --fail-over 20 --min-wait 1ms before.pprof after.pprof

Exit codes: 0 success; 1 a check failed (names --expect, diff --fail-over);
2 bad input or usage (one line on stderr names the file and the problem).

There is no `timeline` command: the recorder aggregates events per stack and
thread over each profile's period and keeps no per-event timestamps. Profiles
carry no contended-acquisition count either, so `top` shows wait, not the
share of contended acquisitions.";

/// Inspect lock profiles written by lockprof (or by Datadog's Python lock
/// profiler): top locks, their call stacks, lock names, flame graphs, diffs.
#[derive(Debug, Parser)]
#[command(name = "lockprof", version, after_long_help = EXAMPLES, after_help = "Run `lockprof --help` for inputs, examples and exit codes.")]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// One row per lock name: acquisitions, total/avg/max wait, share of all
    /// wait, total/avg hold.
    #[command(after_help = "Example: lockprof top -n 10 --by wait /tmp/lockprof/app")]
    Top(TopArgs),
    /// The heaviest call stacks of each lock, leaf first, with file:line.
    #[command(after_help = "Example: lockprof stacks --lock session_lock --by hold /tmp/lockprof/app")]
    Stacks(StacksArgs),
    /// Every lock name, marked `named` (file:line:variable) or `generic`
    /// (file:line).
    #[command(
        after_help = "Example: lockprof names --expect queue,session_lock /tmp/lockprof/app (exit 1 if one is missing)"
    )]
    Names(NamesArgs),
    /// An SVG flame graph of wait or hold time, the lock name as the top
    /// frame, then the frame that locked and its callers.
    #[command(after_help = "Example: lockprof flamegraph --by hold -o hold.svg /tmp/lockprof/app")]
    Flamegraph(FlamegraphArgs),
    /// Who made whom wait: per lock, the holder stacks whose holds caused
    /// the most waiting (caused wait, their own hold time, share), and under
    /// each the waiter stacks that waited on it.
    #[command(after_help = "Example: lockprof blame --lock session_lock /tmp/lockprof/app")]
    Blame(BlameArgs),
    /// How each lock's wait and hold changed between two profiles, largest
    /// wait increase first.
    #[command(
        after_help = "Example: lockprof diff --fail-over 20 base.pprof head.pprof (exit 1 if a lock's wait grew > 20%)"
    )]
    Diff(DiffArgs),
}

#[derive(Debug, Args)]
pub(crate) struct Inputs {
    /// Profile files, directories, DD_PROFILING_OUTPUT_PPROF prefixes, or
    /// http:// URLs of a running program's on-demand endpoint.
    #[arg(required = true, value_name = "PROFILE")]
    pub(crate) files: Vec<PathBuf>,
    /// Of a directory or prefix, read every profile, not the newest (`top`:
    /// a row per run and lock; the others merge them).
    #[arg(long)]
    pub(crate) all: bool,
}

#[derive(Debug, Args)]
pub(crate) struct TopArgs {
    #[command(flatten)]
    pub(crate) inputs: Inputs,
    /// What to rank locks by.
    #[arg(long, value_enum, default_value_t = By::Wait)]
    pub(crate) by: By,
    /// Show at most this many locks.
    #[arg(short = 'n', long = "limit", value_name = "ROWS")]
    pub(crate) limit: Option<usize>,
    /// One JSON array of objects (times in nanoseconds).
    #[arg(long, conflicts_with = "csv")]
    pub(crate) json: bool,
    /// CSV with a header line (times in nanoseconds).
    #[arg(long)]
    pub(crate) csv: bool,
    /// Profiles of several runs (`<prefix>.<pid>.<seq>`: one run per
    /// process) in one row per lock, summed, instead of a row per run and
    /// lock with a RUN column.
    #[arg(long)]
    pub(crate) merge: bool,
}

#[derive(Debug, Args)]
pub(crate) struct StacksArgs {
    #[command(flatten)]
    pub(crate) inputs: Inputs,
    /// Only this lock: its full label (`app.rs:42:queue`) or variable name.
    #[arg(long, value_name = "NAME")]
    pub(crate) lock: Option<String>,
    /// What to weigh stacks by.
    #[arg(long, value_enum, default_value_t = By::Wait)]
    pub(crate) by: By,
    /// Stacks shown per lock.
    #[arg(short = 'n', long = "limit", value_name = "STACKS", default_value_t = 5)]
    pub(crate) limit: usize,
    /// Frames shown per stack.
    #[arg(long, value_name = "FRAMES", default_value_t = 16)]
    pub(crate) depth: usize,
    /// Keep the Rust runtime's frames (from `__rust_begin_short_backtrace`
    /// to the root), which are cut by default as in Rust's short backtraces.
    #[arg(long)]
    pub(crate) full: bool,
}

#[derive(Debug, Args)]
pub(crate) struct BlameArgs {
    #[command(flatten)]
    pub(crate) inputs: Inputs,
    /// Only this lock: its full label (`app.rs:42:queue`) or variable name.
    #[arg(long, value_name = "NAME")]
    pub(crate) lock: Option<String>,
    /// Holder stacks shown per lock.
    #[arg(short = 'n', long = "limit", value_name = "HOLDERS", default_value_t = 5)]
    pub(crate) limit: usize,
    /// Waiter stacks shown per holder.
    #[arg(long, value_name = "WAITERS", default_value_t = 3)]
    pub(crate) waiters: usize,
    /// Frames shown per stack.
    #[arg(long, value_name = "FRAMES", default_value_t = 8)]
    pub(crate) depth: usize,
    /// Keep the Rust runtime's frames (cut by default, as in `stacks`).
    #[arg(long)]
    pub(crate) full: bool,
    /// One JSON array: per lock, its holders and their waiters (times in
    /// nanoseconds).
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct NamesArgs {
    #[command(flatten)]
    pub(crate) inputs: Inputs,
    /// Names that must be present (full labels or variable names, comma
    /// separated); exit code 1 if one is missing.
    #[arg(long, value_delimiter = ',', value_name = "NAME,…")]
    pub(crate) expect: Vec<String>,
    /// One JSON array of `{"lock", "named"}` objects.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Which time a flame graph shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum TimeBy {
    /// Time spent waiting to acquire.
    Wait,
    /// Time held.
    Hold,
    /// Waiting that holders caused others, on the holders' stacks.
    Caused,
}

#[derive(Debug, Args)]
pub(crate) struct FlamegraphArgs {
    #[command(flatten)]
    pub(crate) inputs: Inputs,
    /// Which time to draw.
    #[arg(long, value_enum, default_value_t = TimeBy::Wait)]
    pub(crate) by: TimeBy,
    /// Where to write the SVG (`-` for stdout).
    #[arg(short = 'o', long, value_name = "SVG")]
    pub(crate) output: PathBuf,
    /// The title (default: what is drawn, from which profile).
    #[arg(long)]
    pub(crate) title: Option<String>,
    /// Keep the Rust runtime's frames (cut by default, as in `stacks`).
    #[arg(long)]
    pub(crate) full: bool,
}

#[derive(Debug, Args)]
pub(crate) struct DiffArgs {
    /// The baseline profile (file, directory or prefix).
    pub(crate) before: PathBuf,
    /// The profile to compare with it.
    pub(crate) after: PathBuf,
    /// Of a directory or prefix, read every profile (merged), not the newest.
    #[arg(long)]
    pub(crate) all: bool,
    /// Exit with code 1 if any lock's wait grew by more than PCT percent
    /// (a lock that did not wait before and does now counts as over).
    #[arg(long, value_name = "PCT")]
    pub(crate) fail_over: Option<f64>,
    /// With --fail-over: locks whose wait after is below this never fail
    /// the check (noise floor), e.g. `500us`, `2ms`, `1s`.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_ns, default_value = "0")]
    pub(crate) min_wait: u64,
    /// One JSON array of objects (times in nanoseconds).
    #[arg(long)]
    pub(crate) json: bool,
}

/// Why a `--min-wait` is not a duration; each quotes the text given.
#[derive(Debug, PartialEq, thiserror::Error)]
enum DurationError {
    #[error("unknown unit {0:?} (use ns, us, ms or s)")]
    Unit(String),
    #[error("not a duration: {0:?}")]
    NotANumber(String),
    #[error("duration out of range: {0:?}")]
    OutOfRange(String),
}

/// `250ns`, `500us` (or `µs`), `2ms`, `1.5s`; a bare number is nanoseconds.
fn parse_duration_ns(text: &str) -> Result<u64, DurationError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let scale = match unit.trim() {
        "" | "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        other => return Err(DurationError::Unit(other.to_owned())),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| DurationError::NotANumber(text.to_owned()))?;
    let ns = value * scale;
    if ns.is_finite() && ns >= 0.0 && ns < u64::MAX as f64 {
        Ok(ns as u64)
    } else {
        Err(DurationError::OutOfRange(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration_ns("0"), Ok(0));
        assert_eq!(parse_duration_ns("250ns"), Ok(250));
        assert_eq!(parse_duration_ns("500us"), Ok(500_000));
        assert_eq!(parse_duration_ns("500µs"), Ok(500_000));
        assert_eq!(parse_duration_ns("1.5s"), Ok(1_500_000_000));
        assert!(parse_duration_ns("2 fortnights").is_err());
        assert!(parse_duration_ns("ms").is_err());
        assert!(parse_duration_ns("1e400s").is_err());
    }

    #[test]
    fn command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
