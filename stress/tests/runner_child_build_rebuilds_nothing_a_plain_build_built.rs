//! `run_stress` builds `lock_profiler_stress` itself, from inside a program
//! that `cargo run` started, and so with the variables cargo set for it (this
//! test has them too, from `cargo test`). That build must find up to date
//! what a plain `cargo build` built, and leave it so. With the `datadog`
//! feature the tree holds ring, whose build script re-runs when
//! `CARGO_MANIFEST_DIR` changes: an inherited one rebuilt ring, rustls and
//! reqwest both ways.
//!
//! The builds here are of this package's library, with the runner's clean
//! environment (`cargo::command`): building `lock_profiler_stress` with
//! other features would replace the executable the other tests of this
//! package run.

use std::process::{Command, Stdio};

use lockprof_stress::cargo;

/// `cargo build` of this package's library with uploads (ring in the tree).
fn args() -> Vec<String> {
    let mut args: Vec<String> = [
        "build",
        "--message-format=json-render-diagnostics",
        "--lib",
        "--features",
        "datadog",
    ]
    .map(String::from)
    .into();
    args.extend([
        "--manifest-path".to_owned(),
        concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml").to_owned(),
    ]);
    if !cfg!(debug_assertions) {
        args.push("--release".to_owned());
    }
    args
}

/// `cargo build` as from a shell: no `CARGO_*` variable but the user's own
/// settings. Returns how many crates it compiled.
fn plain_build() -> usize {
    const USER_SETTINGS: &[&str] = &[
        "CARGO_HOME",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_",
        "CARGO_PROFILE_",
        "CARGO_TERM_",
        "CARGO_NET_",
        "CARGO_HTTP_",
        "CARGO_REGISTRIES_",
        "CARGO_INCREMENTAL",
    ];
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        let user = USER_SETTINGS.iter().any(|s| name.starts_with(s));
        if (name.starts_with("CARGO") && !user) || name == "OUT_DIR" {
            command.env_remove(name);
        }
    }
    let output = command
        .args(args())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("run cargo");
    assert!(output.status.success(), "plain cargo build failed");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["fresh"] == false)
        .count()
}

#[test]
fn after_a_plain_build_the_runners_build_compiles_nothing_and_leaves_it_fresh() {
    assert!(
        std::env::var_os("CARGO_MANIFEST_DIR").is_some(),
        "cargo sets CARGO_MANIFEST_DIR for tests as for `cargo run`: the case under test"
    );
    plain_build();
    let build = cargo::build(&args()).expect("the runner's build");
    assert_eq!(
        build.compiled, 0,
        "the runner's build recompiled crates in {:?}",
        build.took
    );
    assert_eq!(
        plain_build(),
        0,
        "a plain build after the runner's recompiled crates"
    );
}
