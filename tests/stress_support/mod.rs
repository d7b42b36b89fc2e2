//! Helpers for the tests that run the stress examples: build an example
//! once, run it with a clean `DD_*` environment, parse its report lines, and
//! read the lock names of the profiles it wrote.
#![allow(dead_code)]

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;

use lockprof::read::LockProfile;

/// Builds example `name` with this test's profile and features (so lockprof
/// is not rebuilt) and returns the executable's path. `cargo test` has built
/// the examples already; this makes `cargo test --test <one>` work too.
pub fn example(name: &str) -> PathBuf {
    static BUILT: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = built.get_or_insert_with(HashMap::new).get(name) {
        return path.clone();
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.args([
        "build",
        "--quiet",
        "--message-format=json-render-diagnostics",
        "--example",
        name,
        "--manifest-path",
        concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"),
    ]);
    if !cfg!(debug_assertions) {
        command.arg("--release");
    }
    let mut features = Vec::new();
    if cfg!(feature = "zstd") {
        features.push("zstd");
    }
    if cfg!(feature = "fault-injection") {
        features.push("fault-injection");
    }
    if cfg!(feature = "cli") {
        features.push("cli");
    }
    if cfg!(feature = "tokio") {
        features.push("tokio");
    }
    if !features.is_empty() {
        command.arg("--features").arg(features.join(","));
    }
    let output = command
        .stderr(Stdio::inherit())
        .output()
        .expect("run cargo build");
    assert!(output.status.success(), "cargo build --example {name} failed");
    let path = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == name)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo did not report the executable of example {name}"));
    built
        .get_or_insert_with(HashMap::new)
        .insert(name.to_owned(), path.clone());
    path
}

/// A command for example `name` with every `DD_*` variable of the test's
/// own environment removed, so a developer's agent or API key never leaks in.
pub fn command(name: &str) -> Command {
    let mut command = Command::new(example(name));
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
    let output = command.output().expect("start the example");
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
    let mut files = 0;
    for entry in std::fs::read_dir(dir).expect("read the profile directory") {
        let path = entry.expect("directory entry").path();
        if path.extension().is_some_and(|e| e == "pprof") {
            files += 1;
            let profile = LockProfile::from_file(&path).expect("read a written profile");
            names.extend(profile.lock_names());
        }
    }
    assert!(files > 0, "no profile was written under {}", dir.display());
    names
}

/// Whether a label names a lock `ident`: `<file>:<line>:<ident>`.
pub fn has_name(names: &BTreeSet<String>, ident: &str) -> bool {
    names
        .iter()
        .any(|label| label.rsplit_once(':').is_some_and(|(_, last)| last == ident))
}
