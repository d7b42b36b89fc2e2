//! Building a stress program from inside another one (`run_stress` builds
//! `lock_profiler_stress`), as a plain `cargo build` would.
//!
//! A program started by `cargo run` (or `cargo test`) inherits the variables
//! cargo sets for it: `CARGO_MANIFEST_DIR`, `CARGO_PKG_*`, … Some build
//! scripts track such variables (ring's re-runs when `CARGO_MANIFEST_DIR`
//! changes), so a `cargo build` run with them rebuilds those crates and
//! everything above them (33 s for ring, rustls and reqwest here), and the
//! user's next plain `cargo build` rebuilds them back. The child build gets
//! the environment without them: the user's own settings (`CARGO_HOME`,
//! `CARGO_TARGET_DIR`, `CARGO_PROFILE_*`, `RUSTFLAGS`, …) pass through.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The variables cargo sets for the programs it runs, by name and by prefix
/// (cargo's "Environment variables Cargo sets for crates").
const SET_BY_CARGO: &[&str] = &[
    "CARGO",
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_CRATE_NAME",
    "CARGO_BIN_NAME",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_TARGET_TMPDIR",
    "CARGO_RUSTC_CURRENT_DIR",
    "OUT_DIR",
];
const PREFIXES_SET_BY_CARGO: &[&str] = &["CARGO_PKG_", "CARGO_BIN_EXE_"];

/// Whether cargo sets `name` for the programs it runs.
pub fn set_by_cargo(name: &str) -> bool {
    SET_BY_CARGO.contains(&name) || PREFIXES_SET_BY_CARGO.iter().any(|p| name.starts_with(p))
}

/// A `cargo` command (the one that built this program, if known) with none
/// of the variables cargo set for this program.
pub fn command() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    for (name, _) in std::env::vars_os() {
        if set_by_cargo(&name.to_string_lossy()) {
            command.env_remove(name);
        }
    }
    command
}

/// A binary built by [`build_bin`].
#[derive(Debug, Clone)]
pub struct Built {
    /// Its executable.
    pub executable: PathBuf,
    /// Crates (and build scripts) compiled, 0 when everything was up to date.
    pub compiled: usize,
    /// How long the build took.
    pub took: Duration,
}

/// The `cargo build` arguments for binary `name` of this package, in the
/// release profile or not, with `features` of this package.
pub fn build_args(name: &str, release: bool, features: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["build", "--message-format=json-render-diagnostics", "--bin", name]
        .map(String::from)
        .into();
    args.extend([
        "--manifest-path".to_owned(),
        concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml").to_owned(),
    ]);
    if release {
        args.push("--release".to_owned());
    }
    if !features.is_empty() {
        args.extend(["--features".to_owned(), features.join(",")]);
    }
    args
}

/// What one `cargo build` did.
#[derive(Debug, Clone)]
pub struct Build {
    /// Cargo's JSON messages.
    pub messages: Vec<serde_json::Value>,
    /// Crates (and build scripts) compiled, 0 when everything was up to date.
    pub compiled: usize,
    /// How long the build took.
    pub took: Duration,
}

/// Runs `cargo` with `args` (which should ask for JSON messages) through
/// [`command`]; cargo's progress and diagnostics go to stderr.
pub fn build(args: &[String]) -> Result<Build, String> {
    let started = Instant::now();
    let output = command()
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !output.status.success() {
        return Err(format!("cargo build exited with {}", output.status));
    }
    let messages: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let compiled = messages
        .iter()
        .filter(|m| m["reason"] == "compiler-artifact" && m["fresh"] == false)
        .count();
    Ok(Build {
        messages,
        compiled,
        took: started.elapsed(),
    })
}

/// Builds binary `name` of this package (see [`build`]) and says what it
/// built.
pub fn build_bin(name: &str, release: bool, features: &[&str]) -> Result<Built, String> {
    let build = build(&build_args(name, release, features))?;
    let executable = build
        .messages
        .iter()
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == name)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| format!("cargo did not report the executable of {name}"))?;
    Ok(Built {
        executable,
        compiled: build.compiled,
        took: build.took,
    })
}
