//! Diagnoses where lock names get lost: runs short workloads over every
//! naming placement with local pprof output, reads the newest profile back,
//! and says which expected names are in it. If an agent or an API key is
//! configured (`DD_AGENT_HOST`, `DD_TRACE_AGENT_URL`, `DD_TRACE_AGENT_PORT`,
//! or `DD_API_KEY` for agentless), it then runs the workloads again under
//! `try_start_from_env()`, which uploads, and says what the agent or intake did
//! with the profiles. The closing table tells a
//! collector problem (names missing locally) from an upload problem (names
//! present locally but not in Datadog).
//!
//! ```text
//! cargo run --release -p lockprof-stress --features datadog --bin lock_debug_stress_test -- [duration_s=30] [workers=4]
//! ```
//!
//! Profiles are written under `DD_PROFILING_OUTPUT_PPROF` if set, else under
//! a new directory in the temporary directory (printed, and removed at the
//! end). Exits with status 1 if any expected name is missing from the local
//! profile.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::thread::sleep;
use std::time::Duration;

use lockprof::read::{LockName, LockProfile};
use lockprof::{named, ProfiledMutex as Mutex, ProfiledReentrantMutex, ProfiledRwLock as RwLock, Profiler};

use lockprof_stress::production::{self, env};

/// Every name the workloads give a lock, with its placement.
const EXPECTED: &[(&str, &str)] = &[
    ("request_lock", "local binding"),
    ("response_lock", "local binding"),
    ("GLOBAL_USER_SESSION_LOCK", "static"),
    ("GLOBAL_CONFIG_LOCK", "static (RwLock)"),
    ("user_session_lock", "struct field"),
    ("cache_read_lock", "struct field"),
    ("cache_write_lock", "struct field"),
    ("_internal_lock", "private field"),
    ("connection_pool_lock", "nested struct field"),
    ("query_lock", "nested struct field"),
    ("login_attempts_lock", "re-entrant mutex, re-entered"),
];

const PHASES: usize = 4;

named!(
    static GLOBAL_USER_SESSION_LOCK: Mutex<u64> = Mutex::new(0);
);
named!(
    static GLOBAL_CONFIG_LOCK: RwLock<u64> = RwLock::new(0);
);

fn hold(micros: u64) {
    sleep(Duration::from_micros(micros));
}

struct CacheManager {
    cache_read_lock: Mutex<u64>,
    cache_write_lock: Mutex<u64>,
    _internal_lock: Mutex<u64>,
}

struct UserManager {
    user_session_lock: Mutex<u64>,
    login_attempts_lock: ProfiledReentrantMutex<Cell<u64>>,
    cache: CacheManager,
}

struct DatabaseConnection {
    query_lock: Mutex<u64>,
}

struct ConnectionPool {
    connection_pool_lock: Mutex<usize>,
    connection: DatabaseConnection,
}

impl UserManager {
    fn new() -> Self {
        named!(Self {
            user_session_lock: Mutex::new(0),
            login_attempts_lock: ProfiledReentrantMutex::new(Cell::new(0)),
            cache: named!(CacheManager {
                cache_read_lock: Mutex::new(0),
                cache_write_lock: Mutex::new(0),
                _internal_lock: Mutex::new(0),
            }),
        })
    }

    fn track_login_attempts(&self) {
        let attempts = self.login_attempts_lock.lock();
        attempts.set(attempts.get() + 1);
        self.validate_attempt();
    }

    fn validate_attempt(&self) {
        let attempts = self.login_attempts_lock.lock(); // re-entered
        let _valid = attempts.get() > 0;
        hold(200);
    }
}

impl ConnectionPool {
    fn new() -> Self {
        named!(Self {
            connection_pool_lock: Mutex::new(0),
            connection: named!(DatabaseConnection {
                query_lock: Mutex::new(0),
            }),
        })
    }
}

fn local_locks(_worker: usize) {
    for _ in 0..10 {
        named!(let request_lock = Mutex::new(0u64));
        named!(let response_lock = Mutex::new(0u64));
        // No name on purpose: shows up as a generic `file:line` lock.
        let anonymous = Mutex::new(0u64);
        *request_lock.lock().unwrap() += 1;
        hold(300);
        *response_lock.lock().unwrap() += 1;
        *anonymous.lock().unwrap() += 1;
        hold(300);
    }
}

fn static_locks(worker: usize) {
    for i in 0..10 {
        *GLOBAL_USER_SESSION_LOCK.lock().unwrap() += 1;
        hold(500);
        if (i + worker) % 4 == 0 {
            *GLOBAL_CONFIG_LOCK.write().unwrap() += 1;
        } else {
            let _version = *GLOBAL_CONFIG_LOCK.read().unwrap();
        }
        hold(200);
    }
}

fn struct_locks(shared: &UserManager, pool: &ConnectionPool) {
    for _ in 0..5 {
        *shared.user_session_lock.lock().unwrap() += 1;
        hold(300);
        let _hits = *shared.cache.cache_read_lock.lock().unwrap();
        *shared.cache.cache_write_lock.lock().unwrap() += 1;
        *shared.cache._internal_lock.lock().unwrap() += 1;
        *pool.connection_pool_lock.lock().unwrap() += 1;
        {
            let mut queries = pool.connection.query_lock.lock().unwrap();
            *queries += 1;
            hold(300);
        }
    }
}

fn reentrant_locks(shared: &UserManager) {
    for _ in 0..5 {
        shared.track_login_attempts();
        hold(200);
    }
}

/// Runs the four phases, `duration` in all.
fn run_workloads(duration: Duration, workers: usize) {
    let phase = duration / PHASES as u32;
    let users = UserManager::new();
    let pool = ConnectionPool::new();
    production::run_phase(
        1,
        "Local named locks (and one anonymous lock)",
        phase,
        workers,
        &local_locks,
    );
    production::run_phase(2, "Static locks", phase, workers, &static_locks);
    production::run_phase(
        3,
        "Struct, nested struct and private field locks",
        phase,
        workers,
        &|_| struct_locks(&users, &pool),
    );
    production::run_phase(4, "Re-entrant locks", phase, workers, &|_| {
        reentrant_locks(&users)
    });
}

fn main() -> ExitCode {
    for (name, value) in [
        ("DD_SERVICE", "lock-debug-stress-test"),
        ("DD_ENV", "debug"),
        ("DD_VERSION", "1.0.0"),
    ] {
        if env(name).is_none() {
            std::env::set_var(name, value);
        }
    }
    production::agentless_when_only_a_key();
    let (duration, workers) = production::parse_args("lock_debug_stress_test", 30.0, 4);
    // A directory of this run's own, removed at the end, unless the
    // environment names where profiles go.
    let own_dir = env("DD_PROFILING_OUTPUT_PPROF")
        .is_none()
        .then(|| std::env::temp_dir().join(format!("lockprof-debug-{}", std::process::id())));
    let prefix = match (&own_dir, env("DD_PROFILING_OUTPUT_PPROF")) {
        (Some(dir), _) => dir.join("lock-debug-stress-test"),
        (None, prefix) => PathBuf::from(prefix.unwrap_or_default()),
    };
    let _removed_at_exit = own_dir.map(RemovedAtExit);

    let rule = "=".repeat(80);
    println!("{rule}\nLock Debug Stress Test - where do lock names get lost?\n{rule}");
    println!("Duration: {:.1}s, workers: {workers}", duration.as_secs_f64());
    println!("Local profiles: {}.<pid>.<seq>.pprof", prefix.display());
    println!("Upload (step 3): {}", production::upload_mode(false));

    // Step 1: local profile, everything captured, one profile for the run.
    let (mut builder, errors) = Profiler::builder().with_env();
    for e in &errors {
        println!("warning: {e}; using the default");
    }
    if env("DD_PROFILING_CAPTURE_PCT").is_none() {
        builder = builder.capture_pct(100.0);
    }
    if env("DD_PROFILING_UPLOAD_INTERVAL").is_none() {
        builder = builder.flush_interval(duration + Duration::from_secs(60));
    }
    let profiler = match builder.output_pprof(&prefix).start() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("cannot start the profiler: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("\nStep 1: workloads with local output ({})", profiler.output());
    run_workloads(duration, workers);
    let stats = profiler.stop();
    println!(
        "\nProfiler: {} profile(s) written, {} failed, {} events recorded, {} dropped",
        stats.profiles_exported, stats.profiles_failed, stats.events_recorded, stats.events_dropped
    );

    // Step 2: read the newest profile of this process back.
    let Some(path) = stats.files.last().cloned() else {
        println!("\nNo profile was written under {}.", prefix.display());
        print_diagnosis(false, Upload::NotTried);
        return ExitCode::FAILURE;
    };
    let profile = match LockProfile::from_file(&path) {
        Ok(p) => p,
        Err(e) => {
            println!("\nCannot read {}: {e}", path.display());
            print_diagnosis(false, Upload::NotTried);
            return ExitCode::FAILURE;
        }
    };
    let missing = analyze(&path, &profile);

    // Step 3: the upload, if one is configured.
    let upload = if production::upload_configured() {
        upload_step(duration, workers)
    } else {
        println!("\nStep 3: upload skipped (set DD_AGENT_HOST or DD_API_KEY to test it too)");
        Upload::NotTried
    };

    print_diagnosis(missing.is_empty(), upload);
    if missing.is_empty() {
        println!("\nRESULT: PASS - every expected lock name is in the local profile");
        ExitCode::SUCCESS
    } else {
        println!(
            "\nRESULT: FAIL - missing from the local profile: {}",
            missing.join(", ")
        );
        ExitCode::FAILURE
    }
}

/// Prints what the profile holds; returns the expected names it lacks.
fn analyze(path: &std::path::Path, profile: &LockProfile) -> Vec<&'static str> {
    println!("\nStep 2: reading back {}", path.display());
    println!("Samples: {}", profile.samples.len());
    println!(
        "Samples with lock-acquire > 0: {}",
        profile.samples.iter().filter(|s| s.acquire > 0).count()
    );
    println!(
        "Samples with lock-release > 0: {}",
        profile.samples.iter().filter(|s| s.release > 0).count()
    );

    // Per label: acquisitions and releases.
    let mut per_label: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    let mut unlabeled = 0usize;
    for sample in &profile.samples {
        match sample.lock_name.as_deref() {
            Some(label) => {
                let entry = per_label.entry(label).or_default();
                entry.0 += sample.acquire;
                entry.1 += sample.release;
            }
            None => unlabeled += 1,
        }
    }
    let (named, generic): (Vec<_>, Vec<_>) = per_label
        .iter()
        .partition(|(label, _)| LockName::parse(label).is_some_and(|name| name.is_named()));
    println!("\nLock names found: {}", per_label.len());
    println!("  named (carry a variable name): {}", named.len());
    for (label, (acquire, release)) in &named {
        println!("    {label:<60} acquire={acquire} release={release}");
    }
    println!("  generic (file:line only): {}", generic.len());
    for (label, (acquire, release)) in &generic {
        println!("    {label:<60} acquire={acquire} release={release}");
    }
    println!("  samples without a lock name: {unlabeled}");

    let missing: Vec<&'static str> = EXPECTED
        .iter()
        .filter(|(name, _)| {
            !per_label
                .keys()
                .any(|label| LockName::parse(label).is_some_and(|lock| lock.matches(name)))
        })
        .map(|(name, _)| *name)
        .collect();
    println!(
        "\nExpected names: {} of {} found",
        EXPECTED.len() - missing.len(),
        EXPECTED.len()
    );
    for (name, placement) in EXPECTED {
        let mark = if missing.contains(name) { "MISSING" } else { "ok" };
        println!("  {mark:<8} {name:<28} ({placement})");
    }
    if missing.is_empty() {
        println!("Missing expected names: none");
    } else {
        println!("Missing expected names: {}", missing.join(", "));
    }
    missing
}

/// A directory this run made for its profiles: removed when dropped, at
/// the end of `main`, with a line saying so.
struct RemovedAtExit(PathBuf);

impl Drop for RemovedAtExit {
    fn drop(&mut self) {
        if std::fs::remove_dir_all(&self.0).is_ok() {
            println!(
                "(removed {}; set DD_PROFILING_OUTPUT_PPROF to keep the profiles)",
                self.0.display()
            );
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Upload {
    NotTried,
    Ok,
    Failed,
}

/// Without the `datadog` feature this build cannot upload: says so.
#[cfg(not(feature = "datadog"))]
fn upload_step(_: Duration, _: usize) -> Upload {
    println!(
        "\nStep 3: upload skipped: this build has no uploads \
         (cargo run --release -p lockprof-stress --features datadog --bin lock_debug_stress_test)"
    );
    Upload::NotTried
}

/// Runs the workloads again under `try_start_from_env()`, which sends profiles
/// where the environment says, and reports what the agent or intake did
/// with them.
#[cfg(feature = "datadog")]
fn upload_step(duration: Duration, workers: usize) -> Upload {
    // Local files would win over the upload; step 1 has written them.
    std::env::remove_var("DD_PROFILING_OUTPUT_PPROF");
    if env("DD_PROFILING_ENABLED").is_none() {
        std::env::set_var("DD_PROFILING_ENABLED", "1");
    }
    println!("\nStep 3: upload ({})", production::upload_mode(false));
    let profiler = match lockprof::try_start_from_env() {
        Ok(profiler) => profiler,
        Err(why) => {
            println!("The profiler did not start from the environment: {why}");
            return Upload::Failed;
        }
    };
    let output = profiler.output().to_owned();
    if output.starts_with("files ") {
        println!("try_start_from_env() chose local files ({output}), not an upload");
        drop(profiler);
        return Upload::Failed;
    }
    println!("Sending to {output}");
    run_workloads(duration.min(Duration::from_secs(20)), workers);
    let started = std::time::Instant::now();
    let stats = profiler.stop();
    let upload = stats.upload.unwrap_or_default();
    println!(
        "Upload: {} sent, {} failed, {} dropped, {} retries ({:.1}s to stop){}",
        upload.sent,
        upload.failed,
        upload.dropped,
        upload.retries,
        started.elapsed().as_secs_f64(),
        stats
            .last_error
            .as_deref()
            .map(|e| format!("; last error: {e}"))
            .unwrap_or_default()
    );
    if upload.sent > 0 && upload.failed == 0 && upload.dropped == 0 {
        Upload::Ok
    } else {
        Upload::Failed
    }
}

/// The closing table, with an arrow on the row that applies.
fn print_diagnosis(names_present: bool, upload: Upload) {
    let rows: [(&str, &str, &str, bool); 4] = [
        (
            "present",
            "ok",
            "collector and upload work; if Datadog lacks names, look at the backend/UI",
            names_present && upload == Upload::Ok,
        ),
        (
            "present",
            "failed",
            "upload problem: check the agent (DD_AGENT_HOST, /info) or DD_API_KEY/DD_SITE",
            names_present && upload == Upload::Failed,
        ),
        (
            "present",
            "not tried",
            "collector works; set DD_AGENT_HOST or DD_API_KEY to test the upload",
            names_present && upload == Upload::NotTried,
        ),
        (
            "missing",
            "any",
            "collector problem: locks not named (named!) or not profiled; fix this first",
            !names_present,
        ),
    ];
    println!("\nDiagnosis");
    println!("    {:<14}{:<13}meaning", "local names", "upload");
    for (local, upload, meaning, applies) in rows {
        let arrow = if applies { "→" } else { " " };
        println!("  {arrow:<2}{local:<14}{upload:<13}{meaning}");
    }
}
