//! In a release build (`debug = "line-tables-only"`, this workspace's release
//! profile) the debug info names functions short (`lock_within<u64>`,
//! `{closure#1}`), inlined or not. Profiles name them with their paths
//! anyway: the function an address is in from the symbol table, the frames
//! inlined into it from their module. Runs the README's main program, built
//! as the README builds it (`.ci/run` has built it already).

mod stress_support;

use lockprof::read::{profile_files, LockProfile, Pick};
use lockprof_stress::cargo::build_bin;
use stress_support::run_ok;

#[test]
fn every_frame_of_the_program_has_its_path() {
    // A release test run has its own release build (building the README's
    // would replace it under the other tests).
    let executable = if cfg!(debug_assertions) {
        build_bin("lock_profiler_stress", true, &[])
            .expect("the release build")
            .executable
    } else {
        env!("CARGO_BIN_EXE_lock_profiler_stress").into()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut command = std::process::Command::new(&executable);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("DD_") {
            command.env_remove(key);
        }
    }
    run_ok(
        command
            .args([
                "--scenario-type",
                "high_contention",
                "--num-threads",
                "4",
                "--num-locks",
                "2",
            ])
            .args([
                "--operations-per-thread",
                "50",
                "--hold-time-ms",
                "1",
                "--think-time-ms",
                "0",
            ])
            .env("DD_PROFILING_ENABLED", "1")
            .env("DD_PROFILING_LOCK_ENABLED", "1")
            .env("DD_PROFILING_CAPTURE_PCT", "100")
            .env("DD_PROFILING_OUTPUT_PPROF", dir.path().join("release")),
    );
    let file = profile_files(dir.path(), Pick::Newest).expect("a profile")[0].clone();
    let profile = LockProfile::from_file(&file).unwrap();
    let frames: Vec<_> = profile
        .samples
        .iter()
        .filter(|s| {
            s.lock_name
                .as_deref()
                .is_some_and(|n| n.contains(":contended_lock["))
        })
        .flat_map(|s| &s.frames)
        .filter(|f| f.file.ends_with("lock_profiler_stress.rs"))
        .collect();
    assert!(!frames.is_empty(), "no frame of the program in {file:?}");
    for f in &frames {
        assert!(
            f.function.starts_with("lock_profiler_stress::"),
            "{} at {}:{} has no path",
            f.function,
            f.file,
            f.line
        );
    }
    // The leaf, inlined into the scenario's closure in a release build.
    assert!(
        frames
            .iter()
            .any(|f| f.function == "lock_profiler_stress::lock_within<u64>"),
        "{:?}",
        frames.iter().map(|f| &f.function).collect::<Vec<_>>()
    );
}
