//! `stress/src/bin/lock_debug_stress_test.rs`, run for a few seconds: it reads its
//! own profile back, reports every expected lock name as found, and exits 0;
//! with nothing recorded it reports them missing, blames the collector, and
//! exits 1. With an agent configured it uploads: to a scripted agent on
//! loopback that accepts, the diagnosis says collector and upload work; to a
//! port nobody listens on, it says the upload is the problem.

mod stress_support;
#[cfg(feature = "datadog")]
#[path = "../../tests/upload_common/mod.rs"]
mod upload_common;

use stress_support::{command, run_ok};
#[cfg(feature = "datadog")]
use upload_common::{closed_port, Reply, ScriptedAgent};

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
fn without_an_output_prefix_its_own_temporary_directory_is_removed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let output = run_ok(
        command("lock_debug_stress_test")
            .args(["1", "2"])
            .env("TMPDIR", tmp.path()),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("RESULT: PASS"), "{stdout}");
    assert!(stdout.contains("(removed "), "{stdout}");
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}\n{stdout}");
}

#[test]
fn names_missing_from_the_local_profile_fail_the_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = command("lock_debug_stress_test")
        .args(["1", "2"])
        .env("DD_PROFILING_OUTPUT_PPROF", dir.path().join("debug"))
        .env("DD_PROFILING_CAPTURE_PCT", "0")
        .output()
        .expect("start the program");
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

#[test]
#[cfg(feature = "datadog")]
fn with_an_agent_that_accepts_the_upload_is_reported_ok() {
    let agent = ScriptedAgent::start(|_| Reply::Status(200));
    let dir = tempfile::tempdir().expect("tempdir");
    let output = run_ok(
        command("lock_debug_stress_test")
            .args(["1", "2"])
            .env("DD_PROFILING_OUTPUT_PPROF", dir.path().join("debug"))
            .env("DD_TRACE_AGENT_URL", agent.url()),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("Missing expected names: none"), "{stdout}");
    assert!(
        stdout.contains(&format!("Sending to Datadog agent at {}/", agent.url())),
        "{stdout}"
    );
    assert!(stdout.contains("Upload: 1 sent, 0 failed, 0 dropped"), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.contains('→') && l.contains("present") && l.contains(" ok ")),
        "the diagnosis should point at `present / ok`:\n{stdout}"
    );
    let uploads: Vec<_> = agent
        .requests()
        .into_iter()
        .filter(|r| r.head.starts_with("POST /profiling/v1/input "))
        .collect();
    assert_eq!(uploads.len(), 1, "{:?}", agent.requests());
    // The profile went up with the identity the debug test gives itself.
    let body = String::from_utf8_lossy(&uploads[0].body);
    assert!(body.contains("service:lock-debug-stress-test"), "{body}");
}

#[test]
#[cfg(feature = "datadog")]
fn an_unreachable_agent_is_an_upload_problem_not_a_collector_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = run_ok(
        command("lock_debug_stress_test")
            .args(["1", "2"])
            .env("DD_PROFILING_OUTPUT_PPROF", dir.path().join("debug"))
            .env("DD_AGENT_HOST", "127.0.0.1")
            .env("DD_TRACE_AGENT_PORT", closed_port().to_string())
            .env("DD_PROFILING_API_TIMEOUT_MS", "1000"),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("Missing expected names: none"), "{stdout}");
    assert!(stdout.contains("Upload: 0 sent"), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.contains('→') && l.contains("upload problem")),
        "the diagnosis should blame the upload:\n{stdout}"
    );
    assert!(stdout.contains("RESULT: PASS"), "{stdout}");
}
