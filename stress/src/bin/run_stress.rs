//! Runs the named stress configurations of `stress/stress_configs.toml`,
//! each in its own `lock_profiler_stress` process, writes
//! `results.<name>.json` into a results directory and prints a summary
//! table; with `--profiling both`, each configuration runs without and then
//! with the profiler, and the table shows the overhead as a ratio of
//! durations.
//!
//! ```text
//! cargo run --release -p lockprof-stress --bin run_stress -- results/
//! BENCHMARK_CONFIGS=high-contention-10-threads,deadlock-prone \
//!     cargo run --release -p lockprof-stress --bin run_stress -- results/ --profiling both
//! cargo run -p lockprof-stress --bin run_stress -- --list
//! ```
//!
//! `BENCHMARK_CONFIGS` selects configurations by exact name, comma-separated;
//! an unknown name is an error that lists the valid ones. Runs with the
//! profiler get `DD_PROFILING_ENABLED=1 DD_PROFILING_LOCK_ENABLED=1` and,
//! unless set already, `DD_PROFILING_OUTPUT_PPROF=<results>/profiles/<name>`;
//! every other `DD_PROFILING_*` variable passes through. Each run's output
//! goes to `<results>/logs/`.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use serde::Serialize;

use lockprof_stress::cargo;
use lockprof_stress::config::{self, Entry};
use lockprof_stress::stats::ScenarioResult;

/// Runs the lock-profiler stress configurations and summarizes them.
#[derive(Parser, Debug)]
#[command(name = "run_stress")]
struct Args {
    /// Directory for results.<name>.json, logs/ and profiles/ (created if
    /// missing).
    #[arg(required_unless_present = "list")]
    results_dir: Option<PathBuf>,
    /// Configuration file [default: the built-in stress/stress_configs.toml].
    #[arg(long)]
    config: Option<PathBuf>,
    /// Run each configuration with the profiler on, off, or both (off, then
    /// on, and report the overhead).
    #[arg(long, value_enum, default_value_t = Profiling::On)]
    profiling: Profiling,
    /// The lock_profiler_stress executable [default: built with cargo, in the
    /// same profile as this runner].
    #[arg(long)]
    stress_bin: Option<PathBuf>,
    /// Stop a run that takes longer than this many seconds (it counts as
    /// failed).
    #[arg(long, default_value_t = 3600)]
    timeout_s: u64,
    /// List the configurations and exit.
    #[arg(long)]
    list: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Profiling {
    On,
    Off,
    Both,
}

/// Scenario types this build of `lock_profiler_stress` can run.
fn scenario_available(scenario_type: &str) -> bool {
    scenario_type != "async_stress" || cfg!(feature = "tokio")
}

/// One configuration's outcome, for the table and `summary.json`.
#[derive(Debug, Serialize)]
struct Row {
    name: String,
    scenario: String,
    /// The run with the profiler, if any.
    on: Option<ScenarioResult>,
    /// The run without it, if any.
    off: Option<ScenarioResult>,
    /// Duration with the profiler over duration without.
    overhead: Option<f64>,
    /// Runs that failed, with why.
    failures: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let entries = match &args.config {
        Some(path) => config::load(path),
        None => config::parse(config::BUILTIN).map_err(|e| format!("built-in configuration: {e}")),
    };
    let entries = match entries {
        Ok(entries) => entries,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if args.list {
        for e in &entries {
            let note = if scenario_available(&e.scenario_type) {
                ""
            } else {
                "   (not available in this build)"
            };
            println!("{:<30} {}{note}", e.name, e.args()[2..].join(" "));
        }
        return ExitCode::SUCCESS;
    }
    let Some(results_dir) = args.results_dir.clone() else {
        eprintln!("error: a results directory is required");
        return ExitCode::from(2);
    };

    let selection = std::env::var("BENCHMARK_CONFIGS").ok();
    let explicit = selection.as_deref().is_some_and(|s| !s.trim().is_empty());
    let selected = match config::select(&entries, selection.as_deref()) {
        Ok(selected) => selected,
        Err(e) => {
            eprintln!("error: BENCHMARK_CONFIGS: {e}");
            return ExitCode::from(2);
        }
    };
    let (selected, skipped): (Vec<&Entry>, Vec<&Entry>) = selected
        .into_iter()
        .partition(|e| scenario_available(&e.scenario_type));
    if explicit && !skipped.is_empty() {
        let names: Vec<&str> = skipped.iter().map(|e| e.name.as_str()).collect();
        eprintln!(
            "error: BENCHMARK_CONFIGS names configurations this build cannot run: {}",
            names.join(", ")
        );
        return ExitCode::from(2);
    }
    for e in &skipped {
        println!(
            "skipping {}: scenario {} is not available in this build",
            e.name, e.scenario_type
        );
    }

    let stress_bin = match &args.stress_bin {
        Some(path) => path.clone(),
        None => match build_stress_bin() {
            Ok(path) => path,
            Err(e) => {
                eprintln!("error: cannot build lock_profiler_stress: {e}\n(pass --stress-bin PATH)");
                return ExitCode::FAILURE;
            }
        },
    };
    for dir in [results_dir.clone(), results_dir.join("logs")] {
        if let Err(e) = fs::create_dir_all(&dir) {
            eprintln!("error: cannot create {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
    }

    let modes: &[bool] = match args.profiling {
        Profiling::On => &[true],
        Profiling::Off => &[false],
        Profiling::Both => &[false, true],
    };
    let total_runs = selected.len() * modes.len();
    let started = Instant::now();
    let mut done = 0usize;
    let mut rows = Vec::with_capacity(selected.len());
    for entry in &selected {
        let mut row = Row {
            name: entry.name.clone(),
            scenario: entry.scenario_type.clone(),
            on: None,
            off: None,
            overhead: None,
            failures: Vec::new(),
        };
        for &profiled in modes {
            let elapsed = started.elapsed();
            let eta = if done == 0 {
                "unknown".to_owned()
            } else {
                human(elapsed.div_f64(done as f64).mul_f64((total_runs - done) as f64))
            };
            println!(
                "[{}/{total_runs}] {} (profiling {}) | elapsed {} | ETA {eta}",
                done + 1,
                entry.name,
                if profiled { "on" } else { "off" },
                human(elapsed),
            );
            let only_mode = modes.len() == 1;
            let run = run_one(
                &stress_bin,
                &results_dir,
                entry,
                profiled,
                only_mode,
                args.timeout_s,
            );
            done += 1;
            match run {
                Ok(result) => {
                    println!(
                        "        {:.2}s, {} ops, {:.2} ops/s, {} contentions, {} errors",
                        result.duration_s,
                        result.total_operations,
                        result.operations_per_sec,
                        result.contentions,
                        result.errors
                    );
                    if profiled {
                        row.on = Some(result);
                    } else {
                        row.off = Some(result);
                    }
                }
                Err(e) => {
                    println!("        FAILED: {e}");
                    row.failures.push(e);
                }
            }
        }
        if let (Some(on), Some(off)) = (&row.on, &row.off) {
            if off.duration_s > 0.0 {
                row.overhead = Some(on.duration_s / off.duration_s);
            }
        }
        rows.push(row);
    }

    print_summary(&rows, args.profiling == Profiling::Both, started.elapsed());
    let summary_path = results_dir.join("summary.json");
    match serde_json::to_string_pretty(&rows) {
        Ok(json) => {
            if let Err(e) = fs::write(&summary_path, json + "\n") {
                eprintln!("cannot write {}: {e}", summary_path.display());
            }
        }
        Err(e) => eprintln!("cannot encode the summary: {e}"),
    }
    println!("Results in {}", results_dir.display());
    let failed = rows.iter().filter(|r| !r.failures.is_empty()).count();
    if failed > 0 {
        println!(
            "{failed} configuration(s) failed; see {}",
            results_dir.join("logs").display()
        );
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Runs one configuration in its own process and reads its JSON back.
fn run_one(
    stress_bin: &Path,
    results_dir: &Path,
    entry: &Entry,
    profiled: bool,
    only_mode: bool,
    timeout_s: u64,
) -> Result<ScenarioResult, String> {
    let suffix = if profiled || only_mode {
        ""
    } else {
        ".profiling-off"
    };
    let output = results_dir.join(format!("results.{}{suffix}.json", entry.name));
    let log_path = results_dir
        .join("logs")
        .join(format!("{}{suffix}.log", entry.name));
    let _ = fs::remove_file(&output);
    let log = File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let log_err = log.try_clone().map_err(|e| e.to_string())?;

    let mut command = Command::new(stress_bin);
    command
        .args(entry.args())
        .arg("--output")
        .arg(&output)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    if profiled {
        command
            .env("DD_PROFILING_ENABLED", "1")
            .env("DD_PROFILING_LOCK_ENABLED", "1");
        if std::env::var_os("DD_PROFILING_OUTPUT_PPROF").is_none() {
            command.env(
                "DD_PROFILING_OUTPUT_PPROF",
                results_dir.join("profiles").join(&entry.name),
            );
        }
    } else {
        command.env("DD_PROFILING_ENABLED", "0");
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", stress_bin.display()))?;
    let deadline = Instant::now() + Duration::from_secs(timeout_s);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "timed out after {timeout_s}s (log: {})",
                    log_path.display()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(format!("cannot wait for the run: {e}")),
        }
    };
    if !status.success() {
        let log = fs::read_to_string(&log_path).unwrap_or_default();
        let tail: Vec<&str> = log
            .lines()
            .rev()
            .take(5)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Err(format!(
            "{status}; last output:\n          {}",
            tail.join("\n          ")
        ));
    }
    let json = fs::read_to_string(&output).map_err(|e| format!("{}: {e}", output.display()))?;
    serde_json::from_str(&json).map_err(|e| format!("{}: {e}", output.display()))
}

/// Builds `lock_profiler_stress` with cargo, in this runner's profile and
/// features, saying what it does, and returns its path.
fn build_stress_bin() -> Result<PathBuf, String> {
    let release = !cfg!(debug_assertions);
    let features = lockprof_stress::config::enabled_features();
    let args = cargo::build_args("lock_profiler_stress", release, &features);
    println!("Building lock_profiler_stress: cargo {}", args.join(" "));
    let built = cargo::build_bin("lock_profiler_stress", release, &features)?;
    if built.compiled == 0 {
        println!("lock_profiler_stress is up to date ({})", human(built.took));
    } else {
        println!(
            "Built lock_profiler_stress: {} crate(s) compiled in {}",
            built.compiled,
            human(built.took)
        );
    }
    Ok(built.executable)
}

fn print_summary(rows: &[Row], both: bool, elapsed: Duration) {
    println!("\nSummary ({} configurations in {})", rows.len(), human(elapsed));
    let mut header = format!(
        "{:<30} {:>9} {:>10} {:>11} {:>9} {:>10} {:>11} {:>7}",
        "configuration", "duration", "ops", "ops/s", "avg acq", "max acq", "contentions", "errors"
    );
    if both {
        header.push_str(&format!(" {:>9} {:>9}", "off", "overhead"));
    }
    println!("{header}\n{}", "-".repeat(header.len()));
    for row in rows {
        let Some(result) = row.on.as_ref().or(row.off.as_ref()) else {
            println!("{:<30} FAILED", row.name);
            continue;
        };
        let mut line = format!(
            "{:<30} {:>8.2}s {:>10} {:>11.2} {:>7.3}ms {:>8.3}ms {:>11} {:>7}",
            row.name,
            result.duration_s,
            result.total_operations,
            result.operations_per_sec,
            result.avg_acquire_ms,
            result.max_acquire_ms,
            result.contentions,
            result.errors
        );
        if both {
            let off = row
                .off
                .as_ref()
                .map(|r| format!("{:.2}s", r.duration_s))
                .unwrap_or_else(|| "-".to_owned());
            let overhead = row
                .overhead
                .map(|o| format!("{o:.3}x"))
                .unwrap_or_else(|| "-".to_owned());
            line.push_str(&format!(" {off:>9} {overhead:>9}"));
        }
        if !row.failures.is_empty() {
            line.push_str("  (a run FAILED)");
        }
        println!("{line}");
    }
    if both {
        println!("overhead = duration with the profiler / duration without; 1.000x is free");
    }
}

/// `12.3s`, `4m05s`, `1h02m`.
fn human(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else if secs < 3600.0 {
        format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60)
    } else {
        format!("{}h{:02}m", d.as_secs() / 3600, (d.as_secs() % 3600) / 60)
    }
}
