//! What the production stress tests share: their identity and sampling set
//! through the environment, their command line, the header, the phases and
//! the closing summary.

use std::thread;
use std::time::{Duration, Instant};

use lockprof::{NotStarted, ProfilerHandle};

/// Sets `DD_SERVICE`, `DD_ENV`, `DD_VERSION`, 100% capture and lock profiling
/// on, each only where the environment does not set it already. Called first
/// thing in `main`, before any thread exists.
pub fn set_env_defaults(service: &str) {
    let defaults = [
        ("DD_SERVICE", service),
        ("DD_ENV", "stress-test"),
        ("DD_VERSION", "1.0.0"),
        ("DD_PROFILING_ENABLED", "1"),
        ("DD_PROFILING_LOCK_ENABLED", "1"),
        ("DD_PROFILING_CAPTURE_PCT", "100"),
    ];
    for (name, value) in defaults {
        if env(name).is_none() {
            std::env::set_var(name, value);
        }
    }
    agentless_when_only_a_key();
}

/// As in the reference scripts, `DD_API_KEY` alone means agentless: turns
/// `DD_PROFILING_AGENTLESS` on when a key is set and neither an agent nor
/// `DD_PROFILING_AGENTLESS` is. Called before any thread exists.
pub fn agentless_when_only_a_key() {
    let agent = ["DD_TRACE_AGENT_URL", "DD_AGENT_HOST", "DD_TRACE_AGENT_PORT"]
        .iter()
        .any(|v| env(v).is_some());
    if env("DD_API_KEY").is_some() && !agent && env("DD_PROFILING_AGENTLESS").is_none() {
        std::env::set_var("DD_PROFILING_AGENTLESS", "true");
    }
}

/// Whether the environment names somewhere to upload to: an agent, or
/// agentless mode.
pub fn upload_configured() -> bool {
    ["DD_TRACE_AGENT_URL", "DD_AGENT_HOST", "DD_TRACE_AGENT_PORT"]
        .iter()
        .any(|v| env(v).is_some())
        || agentless()
}

/// Whether `DD_PROFILING_AGENTLESS` is true, as lockprof reads it.
fn agentless() -> bool {
    lockprof::env_bool("DD_PROFILING_AGENTLESS").is_ok_and(|on| on == Some(true))
}

/// An environment variable, if set and not empty.
pub fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// `[duration_s] [workers]` from the command line, with defaults; prints the
/// usage and exits on anything else.
pub fn parse_args(program: &str, default_duration_s: f64, default_workers: usize) -> (Duration, usize) {
    let usage = format!(
        "usage: {program} [duration_s={default_duration_s}] [workers={default_workers}]\n\
         \x20      (cargo run --release -p lockprof-stress --features datadog --bin {program} -- 60 4)"
    );
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{usage}");
        std::process::exit(0);
    }
    let fail = |what: &str| -> ! {
        eprintln!("{what}\n{usage}");
        std::process::exit(2);
    };
    if args.len() > 2 {
        fail("too many arguments");
    }
    let duration = match args.first() {
        None => default_duration_s,
        Some(a) => match a.parse::<f64>() {
            Ok(s) if s.is_finite() && s > 0.0 => s,
            _ => fail(&format!(
                "duration_s must be a positive number of seconds, not {a:?}"
            )),
        },
    };
    let workers = match args.get(1) {
        None => default_workers,
        Some(a) => match a.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => fail(&format!("workers must be a positive whole number, not {a:?}")),
        },
    };
    (Duration::from_secs_f64(duration), workers)
}

/// Where the environment says profiles should go, in words (lockprof's
/// rules; the profiler's `output()` says where they actually go). With
/// `files_win` false, `DD_PROFILING_OUTPUT_PPROF` is left out of account.
pub fn upload_mode(files_win: bool) -> String {
    let agentless = agentless();
    if let Some(prefix) = env("DD_PROFILING_OUTPUT_PPROF").filter(|_| files_win) {
        format!("local files {prefix}.<pid>.<seq>.pprof (DD_PROFILING_OUTPUT_PPROF is set)")
    } else if !cfg!(feature = "datadog") {
        "local files: this build has no uploads (build with --features datadog)".to_owned()
    } else if agentless {
        format!(
            "agentless to {} (DD_API_KEY {})",
            env("DD_SITE").unwrap_or_else(|| "datadoghq.com".to_owned()),
            if env("DD_API_KEY").is_some() {
                "set"
            } else {
                "MISSING"
            }
        )
    } else if let Some(url) = env("DD_TRACE_AGENT_URL") {
        format!("agent at {url}")
    } else if env("DD_AGENT_HOST").is_some() || env("DD_TRACE_AGENT_PORT").is_some() {
        format!(
            "agent at {}:{}",
            env("DD_AGENT_HOST").unwrap_or_else(|| "localhost".to_owned()),
            env("DD_TRACE_AGENT_PORT").unwrap_or_else(|| "8126".to_owned())
        )
    } else {
        "local files, unless an agent listens on localhost:8126 (no DD_AGENT_HOST, DD_TRACE_AGENT_URL or DD_API_KEY)"
            .to_owned()
    }
}

/// Prints the banner, the configuration and the lock names to look for.
pub fn print_header(title: &str, duration: Duration, workers: usize, phases: usize, expected: &[&str]) {
    let rule = "=".repeat(80);
    println!("{rule}\n{title} - Lock Name Verification\n{rule}");
    for name in ["DD_SERVICE", "DD_ENV", "DD_VERSION", "DD_PROFILING_CAPTURE_PCT"] {
        println!("{name}: {}", env(name).unwrap_or_default());
    }
    println!(
        "Duration: {:.1}s, {phases} phases of {:.1}s",
        duration.as_secs_f64(),
        duration.as_secs_f64() / phases as f64
    );
    println!("Workers per phase: {workers}");
    println!("Upload mode: {}", upload_mode(true));
    println!("\nExpected lock names (label `<file>:<line>:<name>`):");
    for name in expected {
        println!("  - {name}");
    }
    println!("If a profile shows only `<file>:<line>` for these, lock naming is not working.\n{rule}");
}

/// Runs `work(worker)` on `workers` threads, over and over, until `duration`
/// has passed; prints the phase's title and how long it took.
pub fn run_phase(
    number: usize,
    title: &str,
    duration: Duration,
    workers: usize,
    work: &(dyn Fn(usize) + Sync),
) {
    println!("\nPhase {number}: {title}\n{}", "-".repeat(80));
    let start = Instant::now();
    let end = start + duration;
    let rounds: u64 = thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|worker| {
                thread::Builder::new()
                    .name(format!("phase-{number}-worker-{worker}"))
                    .spawn_scoped(scope, move || {
                        let mut rounds = 0u64;
                        while Instant::now() < end {
                            work(worker);
                            rounds += 1;
                        }
                        rounds
                    })
                    .expect("spawn a worker")
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .sum()
    });
    println!(
        "✓ Phase completed in {:.2}s ({rounds} rounds)",
        start.elapsed().as_secs_f64()
    );
}

/// Starts the profiler as the environment says, and says where profiles go
/// or why it did not start.
pub fn start() -> Result<ProfilerHandle, NotStarted> {
    let profiler = lockprof::try_start_from_env();
    match &profiler {
        Ok(p) => println!("Profiler started; profiles go to {}", p.output()),
        Err(why) => println!("The profiler did not start: {why}."),
    }
    profiler
}

/// Stops the profiler (which exports a last profile) and says where the
/// profiles went and how to look at them.
pub fn finish(profiler: Result<ProfilerHandle, NotStarted>, started: Instant) {
    let rule = "=".repeat(80);
    println!(
        "\n{rule}\nAll phases completed in {:.2}s\n{rule}",
        started.elapsed().as_secs_f64()
    );
    let profiler = match profiler {
        Ok(profiler) => profiler,
        Err(why) => {
            println!("The profiler did not run: {why}.");
            return;
        }
    };
    let output = profiler.output().to_owned();
    let stats = profiler.stop();
    println!(
        "Profiles: {} exported, {} failed, to {output}",
        stats.profiles_exported, stats.profiles_failed
    );
    println!(
        "Events: {} recorded, {} dropped",
        stats.events_recorded, stats.events_dropped
    );
    #[cfg(feature = "datadog")]
    if let Some(upload) = &stats.upload {
        println!(
            "Upload: {} sent, {} failed, {} dropped, {} retries",
            upload.sent, upload.failed, upload.dropped, upload.retries
        );
    }
    if let Some(error) = &stats.last_error {
        println!("Last export error: {error}");
    }
    if output.starts_with("files ") {
        println!(
            "See the lock names with: cargo run --features cli --bin lockprof -- names <the prefix above>"
        );
        println!("                     or: go tool pprof -raw <file>   (the `lock name` labels)");
    } else {
        println!(
            "In Datadog: Profiling, filter service:{} env:{}, Lock profile type.",
            env("DD_SERVICE").unwrap_or_default(),
            env("DD_ENV").unwrap_or_default()
        );
    }
    println!("{rule}");
}
