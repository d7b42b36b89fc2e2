//! `examples/lock_debug_stress_test.rs`, run for a few seconds: it reads its
//! own profile back, reports every expected lock name as found, and exits 0;
//! with nothing recorded it reports them missing, blames the collector, and
//! exits 1.

mod stress_support;

use stress_support::{command, run_ok};

const EXPECTED: &[&str] = &[
    "request_lock",
    "response_lock",
    "GLOBAL_USER_SESSION_LOCK",
    "GLOBAL_CONFIG_LOCK",
    "user_session_lock",
    "cache_read_lock",
    "cache_write_lock",
    "_internal_lock",
    "connection_pool_lock",
    "query_lock",
    "login_attempts_lock",
];

#[test]
fn a_short_run_finds_every_expected_name_and_exits_0() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = run_ok(
        command("lock_debug_stress_test")
            .args(["3", "2"])
            .env("DD_PROFILING_OUTPUT_PPROF", dir.path().join("debug")),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("Missing expected names: none"), "{stdout}");
    assert!(
        stdout.contains(&format!("Expected names: {0} of {0} found", EXPECTED.len())),
        "{stdout}"
    );
    for name in EXPECTED {
        let listed = stdout
            .lines()
            .any(|l| l.trim_start().starts_with("ok") && l.split_whitespace().nth(1) == Some(name));
        assert!(listed, "{name} not reported as found:\n{stdout}");
        let named = stdout.lines().any(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|label| label.ends_with(&format!(":{name}")))
        });
        assert!(named, "{name} not listed among the named locks:\n{stdout}");
    }
    // The anonymous lock is reported as generic (file:line only).
    let generic = stdout
        .split("generic (file:line only): ")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .and_then(|count| count.trim().parse::<usize>().ok());
    assert_eq!(generic, Some(1), "{stdout}");
    let count = |prefix: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|n| n.trim().parse::<usize>().ok())
            .unwrap_or_else(|| panic!("no {prefix:?} line:\n{stdout}"))
    };
    assert!(count("Samples with lock-acquire > 0: ") > 0);
    assert!(count("Samples with lock-release > 0: ") > 0);
    assert!(stdout.contains("upload skipped"), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.contains('→') && l.contains("present") && l.contains("not tried")),
        "the diagnosis should point at `present / not tried`:\n{stdout}"
    );
    assert!(stdout.contains("RESULT: PASS"), "{stdout}");
}

#[test]
fn names_missing_from_the_local_profile_fail_the_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = command("lock_debug_stress_test")
        .args(["1", "2"])
        .env("DD_PROFILING_OUTPUT_PPROF", dir.path().join("debug"))
        .env("DD_PROFILING_CAPTURE_PCT", "0")
        .output()
        .expect("start the example");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    for name in EXPECTED {
        assert!(stdout.contains(&format!("MISSING  {name}")), "{name}:\n{stdout}");
    }
    assert!(
        stdout
            .lines()
            .any(|l| l.contains('→') && l.contains("collector problem")),
        "the diagnosis should blame the collector:\n{stdout}"
    );
    assert!(stdout.contains("RESULT: FAIL"), "{stdout}");
}
