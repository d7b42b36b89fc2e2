//! Every scenario of `stress/src/bin/lock_profiler_stress.rs`, in a tiny
//! configuration, with the profiler on at 100%: the report lines parse, work
//! was done, nothing timed out where nothing should, the `--output` JSON
//! agrees with the report, and the written profile holds each of the
//! scenario's locks by name.

mod stress_support;

use std::path::Path;

use lockprof::read::{profile_files, Pick};
use serde_json::Value;
use stress_support::{command, has_name, lock_names_in, parse_report, run_ok, Report};

/// Runs `scenario` with `args`, profiled, and checks what every scenario must
/// satisfy; returns the report for scenario-specific checks.
fn run_profiled(scenario: &str, args: &[&str], names: &[&str], errors_expected: bool) -> Report {
    let dir = tempfile::tempdir().expect("tempdir");
    let json_path = dir.path().join("result.json");
    let output = run_ok(
        command("lock_profiler_stress")
            .args(["--scenario-type", scenario, "--seed", "7"])
            .args(args)
            .arg("--output")
            .arg(&json_path)
            .env("DD_PROFILING_ENABLED", "1")
            .env("DD_PROFILING_LOCK_ENABLED", "1")
            .env("DD_PROFILING_CAPTURE_PCT", "100")
            .env("DD_PROFILING_OUTPUT_PPROF", dir.path().join(scenario)),
    );
    let report = parse_report(&String::from_utf8_lossy(&output.stdout));
    assert_eq!(report.scenario, scenario);
    assert!(report.total_operations > 0, "{report:?}");
    assert!(report.duration_s > 0.0 || report.total_operations > 0);
    assert!(report.max_acquire_ms >= report.avg_acquire_ms, "{report:?}");
    if !errors_expected {
        assert_eq!(report.errors, 0, "no timeout was expected: {report:?}");
    }

    let result = read_json(&json_path);
    assert_eq!(result["scenario"], scenario);
    assert_eq!(result["total_operations"], report.total_operations);
    assert_eq!(result["errors"], report.errors);
    assert_eq!(result["contentions"], report.contentions);
    assert_eq!(result["profiling"], true);

    let in_profile = lock_names_in(dir.path());
    for ident in names.iter().chain(&["start_gate"]) {
        assert!(
            has_name(&in_profile, ident),
            "{scenario}: no lock named {ident} in the profile; it has {in_profile:?}"
        );
    }
    let reported = result["lock_names"].as_array().expect("lock_names");
    assert_eq!(reported.len(), names.len(), "{reported:?}");
    for label in reported {
        let label = label.as_str().expect("a label");
        assert!(in_profile.contains(label), "{label} is not in {in_profile:?}");
    }
    report
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).expect("the --output file");
    serde_json::from_str(&text).expect("valid JSON")
}

#[test]
fn high_contention() {
    let args = "--num-threads 4 --num-locks 2 --operations-per-thread 40 --hold-time-ms 1 --think-time-ms 1";
    let report = run_profiled("high_contention", &split(args), &["contended_lock"], false);
    assert_eq!(report.total_operations, 4 * 40);
}

#[test]
fn locks_made_in_a_loop_are_told_apart_by_instance() {
    let dir = tempfile::tempdir().expect("tempdir");
    run_ok(
        command("lock_profiler_stress")
            .args(split(
                "--scenario-type high_contention --seed 7 --num-threads 2 --num-locks 3 \
                 --operations-per-thread 60 --hold-time-ms 0 --think-time-ms 0",
            ))
            .env("DD_PROFILING_ENABLED", "1")
            .env("DD_PROFILING_LOCK_ENABLED", "1")
            .env("DD_PROFILING_CAPTURE_PCT", "100")
            .env("DD_PROFILING_OUTPUT_PPROF", dir.path().join("instances")),
    );
    let names = lock_names_in(dir.path());
    for i in 0..3 {
        let instance = format!("contended_lock[{i}]");
        assert!(
            names.iter().any(|n| n.ends_with(&format!(":{instance}"))),
            "no {instance} in {names:?}"
        );
    }
}

#[test]
fn lock_hierarchy() {
    let args = "--num-threads 4 --hierarchy-depth 3 --operations-per-thread 30 --hold-time-ms 1";
    let report = run_profiled("lock_hierarchy", &split(args), &["hierarchy_lock"], false);
    assert_eq!(report.total_operations, 4 * 30);
}

#[test]
fn high_frequency() {
    let args = "--num-threads 4 --num-locks 10 --operations-per-thread 2000";
    let report = run_profiled("high_frequency", &split(args), &["hot_lock"], false);
    assert_eq!(report.total_operations, 4 * 2000);
}

#[test]
fn mixed_primitives() {
    let args = "--num-threads 4 --operations-per-thread 150";
    let names = [
        "mixed_lock",
        "mixed_rlock",
        "mixed_semaphore",
        "condition_lock",
        "mixed_event",
    ];
    let report = run_profiled("mixed_primitives", &split(args), &names, false);
    assert_eq!(report.total_operations, 4 * 150);
}

#[test]
fn long_held_locks() {
    let args = "--num-threads 4 --num-locks 3 --operations-per-thread 10 --hold-time-ms 5 --variance-ms 3";
    let report = run_profiled("long_held_locks", &split(args), &["slow_lock"], false);
    assert_eq!(report.total_operations, 4 * 10);
    // 40 holds of at least 2 ms on 3 locks cannot finish in under 25 ms.
    assert!(report.duration_s >= 0.02, "{report:?}");
}

#[test]
fn producer_consumer() {
    let args =
        "--num-producers 2 --num-consumers 2 --queue-size 10 --items-per-producer 100 --processing-time-ms 0";
    let report = run_profiled("producer_consumer", &split(args), &["work_queue"], false);
    // Each item counts once when put and once when processed.
    assert_eq!(report.total_operations, 2 * 2 * 100);
}

#[test]
fn reader_writer() {
    let args =
        "--num-readers 4 --num-writers 2 --operations-per-thread 20 --read-time-ms 1 --write-time-ms 2";
    let report = run_profiled("reader_writer", &split(args), &["document_lock"], false);
    assert_eq!(report.total_operations, 6 * 20);
}

#[test]
fn memory_pressure() {
    let args =
        "--num-threads 4 --num-locks 4 --operations-per-thread 15 --allocate-mb-per-op 0.25 --hold-time-ms 1";
    let report = run_profiled("memory_pressure", &split(args), &["allocation_lock"], false);
    assert_eq!(report.total_operations, 4 * 15);
}

#[test]
fn deadlock_prone_in_random_order_finishes_despite_timeouts() {
    let args =
        "--num-threads 4 --num-locks 5 --operations-per-thread 40 --randomize-order true --timeout-ms 20";
    let report = run_profiled("deadlock_prone", &split(args), &["resource_lock"], true);
    // Every op either completed or counted at least one timeout.
    assert!(report.total_operations + report.errors >= 4 * 40, "{report:?}");
}

#[test]
fn deadlock_prone_in_global_order_never_times_out() {
    let args =
        "--num-threads 4 --num-locks 5 --operations-per-thread 40 --randomize-order false --timeout-ms 5000";
    let report = run_profiled("deadlock_prone", &split(args), &["resource_lock"], false);
    assert_eq!(report.total_operations, 4 * 40);
}

#[cfg(feature = "tokio")]
#[test]
fn async_stress() {
    let args = "--num-tasks 20 --num-locks 4 --operations-per-task 20 --async-sleep-ms 1";
    let report = run_profiled("async_stress", &split(args), &["async_lock"], false);
    assert_eq!(report.total_operations, 20 * 20);
}

#[cfg(not(feature = "tokio"))]
#[test]
fn async_stress_without_the_tokio_feature_is_refused() {
    let output = command("lock_profiler_stress")
        .args(["--scenario-type", "async_stress"])
        .output()
        .expect("start the program");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("--features tokio"));
}

#[test]
fn without_the_profiling_variables_nothing_is_profiled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let json_path = dir.path().join("result.json");
    let output = run_ok(
        command("lock_profiler_stress")
            .args(split(
                "--scenario-type high_frequency --num-threads 2 --operations-per-thread 500",
            ))
            .arg("--output")
            .arg(&json_path)
            .env("DD_PROFILING_OUTPUT_PPROF", dir.path().join("off")),
    );
    let report = parse_report(&String::from_utf8_lossy(&output.stdout));
    assert_eq!(report.total_operations, 1000);
    let result = read_json(&json_path);
    assert_eq!(result["profiling"], false);
    assert_eq!(result["profile_output"], Value::Null);
    let written = profile_files(dir.path(), Pick::All).unwrap_or_default();
    assert!(written.is_empty(), "a profile was written: {written:?}");
}

#[test]
fn invalid_parameters_are_refused() {
    for args in [
        "--scenario-type no_such_scenario",
        "--scenario-type high_contention --num-locks 0",
        "--scenario-type lock_hierarchy --hierarchy-depth 0",
        "--scenario-type mixed_primitives --use-rlock maybe",
    ] {
        let output = command("lock_profiler_stress")
            .args(split(args))
            .output()
            .expect("start the program");
        assert_eq!(output.status.code(), Some(2), "{args}: {output:?}");
        assert!(output.stdout.is_empty(), "{args}: no report expected");
    }
}

fn split(args: &str) -> Vec<&str> {
    args.split_whitespace().collect()
}
