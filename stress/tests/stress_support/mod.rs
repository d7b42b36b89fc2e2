//! Helpers for the tests that run the stress programs: run one with a clean
//! `DD_*` environment, parse its report lines, and read the lock names of the
//! profiles it wrote.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use lockprof::read::{profile_files, LockName, LockProfile, Pick};

/// The executable of the stress program `name`, which cargo builds, in this
/// test's profile and features, before it runs the test.
pub fn program(name: &str) -> PathBuf {
    PathBuf::from(match name {
        "lock_profiler_stress" => env!("CARGO_BIN_EXE_lock_profiler_stress"),
        "run_stress" => env!("CARGO_BIN_EXE_run_stress"),
        "lock_debug_stress_test" => env!("CARGO_BIN_EXE_lock_debug_stress_test"),
        "lock_production_stress_test" => env!("CARGO_BIN_EXE_lock_production_stress_test"),
        "rlock_production_stress_test" => env!("CARGO_BIN_EXE_rlock_production_stress_test"),
        other => panic!("no stress program {other}"),
    })
}

/// A command for stress program `name` with every `DD_*` variable of the
/// test's own environment removed, so a developer's agent or API key never
/// leaks in.
pub fn command(name: &str) -> Command {
    let mut command = Command::new(program(name));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("DD_") {
            command.env_remove(key);
        }
    }
    command.stdin(Stdio::null());
    command
}

/// Runs `command`, returning its output; fails the test, showing both
/// streams, if it did not exit 0.
pub fn run_ok(command: &mut Command) -> Output {
    let output = command.output().expect("start the program");
    assert!(
        output.status.success(),
        "{command:?} exited with {}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The eight report lines of `lock_profiler_stress`, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub scenario: String,
    pub duration_s: f64,
    pub total_operations: u64,
    pub operations_per_sec: f64,
    pub avg_acquire_ms: f64,
    pub max_acquire_ms: f64,
    pub contentions: u64,
    pub errors: u64,
}

/// Parses stdout, which must be exactly the eight report lines, numbers
/// formatted as the Python suite does (`12.34s`, `4049.45`, `2.456ms`).
pub fn parse_report(stdout: &str) -> Report {
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 8, "expected exactly 8 report lines, got:\n{stdout}");
    let field = |i: usize, prefix: &str| -> &str {
        lines[i]
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("line {} should start with {prefix:?}: {:?}", i + 1, lines[i]))
    };
    let decimals = |text: &str, suffix: &str, places: usize| -> f64 {
        let number = text
            .strip_suffix(suffix)
            .unwrap_or_else(|| panic!("{text:?} should end with {suffix:?}"));
        let (_, fraction) = number
            .split_once('.')
            .unwrap_or_else(|| panic!("{number:?} should have {places} decimals"));
        assert_eq!(fraction.len(), places, "{number:?} should have {places} decimals");
        number
            .parse()
            .unwrap_or_else(|_| panic!("{number:?} is not a number"))
    };
    let integer = |text: &str| -> u64 { text.parse().unwrap_or_else(|_| panic!("{text:?} is not a count")) };
    Report {
        scenario: field(0, "Scenario: ").to_owned(),
        duration_s: decimals(field(1, "Duration: "), "s", 2),
        total_operations: integer(field(2, "Total operations: ")),
        operations_per_sec: decimals(field(3, "Operations/sec: "), "", 2),
        avg_acquire_ms: decimals(field(4, "Avg acquire time: "), "ms", 3),
        max_acquire_ms: decimals(field(5, "Max acquire time: "), "ms", 3),
        contentions: integer(field(6, "Contentions: ")),
        errors: integer(field(7, "Errors: ")),
    }
}

/// Every `lock name` label in the profiles under `dir`.
pub fn lock_names_in(dir: &Path) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let files = profile_files(dir, Pick::All)
        .unwrap_or_else(|e| panic!("no profile was written under {}: {e}", dir.display()));
    for path in files {
        let profile = LockProfile::from_file(&path).expect("read a written profile");
        names.extend(profile.lock_names());
    }
    names
}

/// Whether a label names a lock `ident`, or an instance of it:
/// `<file>:<line>:<ident>` or `<file>:<line>:<ident>[<instance>]`.
pub fn has_name(names: &BTreeSet<String>, ident: &str) -> bool {
    names
        .iter()
        .any(|label| LockName::parse(label).is_some_and(|name| name.matches(ident)))
}
