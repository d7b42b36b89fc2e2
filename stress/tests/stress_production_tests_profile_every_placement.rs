//! The production stress tests, run for a second or two: they finish, and
//! their profile holds every lock name of every phase.

mod stress_support;

use stress_support::{command, has_name, lock_names_in, run_ok};

fn run_and_collect(program: &str) -> (String, std::collections::BTreeSet<String>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = run_ok(
        command(program)
            .args(["1.4", "2"])
            .env("DD_PROFILING_OUTPUT_PPROF", dir.path().join("prod")),
    );
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        lock_names_in(dir.path()),
    )
}

const MUTEX_NAMES: &[&str] = &[
    "request_lock",
    "response_lock",
    "GLOBAL_USER_SESSION_LOCK",
    "GLOBAL_CACHE_LOCK",
    "GLOBAL_DATABASE_LOCK",
    "user_session_lock",
    "user_cache_lock",
    "cache_read_lock",
    "cache_write_lock",
    "connection_pool_lock",
    "query_lock",
    "_internal_lock",
];

#[test]
fn mutex_stress_test_names_all_six_phases_locks() {
    let (stdout, names) = run_and_collect("lock_production_stress_test");
    for phase in 1..=6 {
        assert!(
            stdout.contains(&format!("Phase {phase}: ")),
            "phase {phase}:\n{stdout}"
        );
    }
    assert!(!stdout.contains("Phase 7"), "{stdout}");
    assert!(
        stdout.contains("DD_SERVICE: lock-production-stress-test"),
        "{stdout}"
    );
    assert!(stdout.contains("Profiles: 1 exported, 0 failed"), "{stdout}");
    for name in MUTEX_NAMES {
        assert!(has_name(&names, name), "{name} missing from {names:?}");
    }
}

#[test]
fn reentrant_stress_test_names_all_seven_phases_locks() {
    let (stdout, names) = run_and_collect("rlock_production_stress_test");
    for phase in 1..=7 {
        assert!(
            stdout.contains(&format!("Phase {phase}: ")),
            "phase {phase}:\n{stdout}"
        );
    }
    assert!(
        stdout.contains("DD_SERVICE: rlock-production-stress-test"),
        "{stdout}"
    );
    for name in MUTEX_NAMES.iter().chain(&["login_attempts_lock"]) {
        assert!(has_name(&names, name), "{name} missing from {names:?}");
    }
}
