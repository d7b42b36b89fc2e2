//! `Profiler::builder().start()` takes from the `DD_*` variables every
//! setting the code did not set, as Datadog's libraries do: an operator
//! redirects the output or changes the capture without a rebuild. What the
//! code set wins; `ignore_env()` leaves the environment out; a bad value is
//! logged and its default kept.
//!
//! Environment variables are process-wide: every test holds `serial()` and
//! leaves no `DD_*` variable behind.

mod common;

use std::path::Path;

use common::{logs, serial};
use lockprof::{named, ProfiledMutex, Profiler, ProfilerBuilder};

named!(static WORK: ProfiledMutex<u64> = ProfiledMutex::new(0));

/// Starts `builder` with `vars` set (and a temp dir of the test's own, for
/// the default output), locks once, stops, and returns where profiles went
/// and the files written.
fn run(vars: &[(&str, &Path)], builder: ProfilerBuilder, tmp: &Path) -> (String, Vec<std::path::PathBuf>) {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("DD_") {
            std::env::remove_var(name);
        }
    }
    let tmpdir = std::env::var_os("TMPDIR");
    std::env::set_var("TMPDIR", tmp);
    for (name, value) in vars {
        std::env::set_var(name, value);
    }
    let started = builder.start();
    for (name, _) in vars {
        std::env::remove_var(name);
    }
    match tmpdir {
        Some(t) => std::env::set_var("TMPDIR", t),
        None => std::env::remove_var("TMPDIR"),
    }
    let handle = started.expect("the profiler starts");
    *WORK.lock().unwrap() += 1;
    let output = handle.output().to_owned();
    let stats = handle.stop();
    (output, stats.files)
}

#[test]
fn the_output_and_capture_come_from_the_environment_unless_the_code_set_them() {
    let _turn = serial();
    let dir = tempfile::tempdir().unwrap();
    let from_env = dir.path().join("from-env");
    let from_code = dir.path().join("from-code");

    // Nothing set in code: the variable decides.
    let (output, files) = run(
        &[
            ("DD_PROFILING_OUTPUT_PPROF", &from_env),
            ("DD_PROFILING_CAPTURE_PCT", Path::new("100")),
        ],
        Profiler::builder(),
        dir.path(),
    );
    assert!(output.contains("from-env"), "{output}");
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].to_string_lossy().contains("from-env."), "{files:?}");

    // Set in code: the code wins.
    let (output, files) = run(
        &[("DD_PROFILING_OUTPUT_PPROF", &from_env)],
        Profiler::builder().output_pprof(&from_code),
        dir.path(),
    );
    assert!(output.contains("from-code"), "{output}");
    assert!(files[0].to_string_lossy().contains("from-code."), "{files:?}");

    // ignore_env: the default output, under the temp dir (and files even if
    // an agent answers on localhost:8126).
    let builder = Profiler::builder().ignore_env();
    #[cfg(feature = "datadog")]
    let builder = builder.upload(false);
    let (output, files) = run(&[("DD_PROFILING_OUTPUT_PPROF", &from_env)], builder, dir.path());
    assert!(!output.contains("from-env"), "{output}");
    assert!(files[0].starts_with(dir.path().join("lockprof")), "{files:?}");
}

#[test]
fn a_bad_value_is_logged_and_its_default_kept() {
    let _turn = serial();
    let dir = tempfile::tempdir().unwrap();
    logs::start();
    let (output, files) = run(
        &[
            ("DD_PROFILING_OUTPUT_PPROF", &dir.path().join("bad")),
            ("DD_PROFILING_CAPTURE_PCT", Path::new("lots")),
        ],
        Profiler::builder(),
        dir.path(),
    );
    assert!(output.contains("bad"), "{output}");
    assert_eq!(files.len(), 1);
    let warnings = logs::at(log::Level::Warn);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("DD_PROFILING_CAPTURE_PCT") && warnings[0].contains("using the default"),
        "{}",
        warnings[0]
    );
}
