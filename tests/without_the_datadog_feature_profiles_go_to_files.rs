//! Built without the `datadog` feature (`default-features = false`), the
//! profiler never uploads: with an agent configured in the environment,
//! `start_from_env` writes local files, at the default place, and lists
//! them. Only compiled in that build (`cargo test --no-default-features`).
#![cfg(not(feature = "datadog"))]

use lockprof::{named, ProfiledMutex};

named!(static COUNTER: ProfiledMutex<u64> = ProfiledMutex::new(0));

#[test]
fn an_agent_in_the_environment_still_gets_local_files() {
    let tmp = tempfile::tempdir().unwrap();
    // The default directory is `<temp dir>/lockprof/`: this test's own.
    std::env::set_var("TMPDIR", tmp.path());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("DD_") {
            std::env::remove_var(name);
        }
    }
    std::env::set_var("DD_PROFILING_ENABLED", "true");
    std::env::set_var("DD_PROFILING_CAPTURE_PCT", "100");
    std::env::set_var("DD_TRACE_AGENT_URL", "http://127.0.0.1:9");
    let profiler = lockprof::start_from_env().expect("the profiler starts");
    assert!(profiler.output().starts_with("files "), "{}", profiler.output());
    for _ in 0..10 {
        *COUNTER.lock().unwrap() += 1;
    }
    let stats = profiler.stop();
    assert_eq!(stats.profiles_exported, 1, "{stats:?}");
    assert_eq!(stats.files.len(), 1, "{stats:?}");
    let file = &stats.files[0];
    assert!(
        file.starts_with(tmp.path().join("lockprof")),
        "{}",
        file.display()
    );
    let profile = lockprof::read::LockProfile::from_file(file).unwrap();
    let acquired: i64 = profile
        .samples
        .iter()
        .filter(|s| s.lock_name.as_deref().is_some_and(|n| n.ends_with(":COUNTER")))
        .map(|s| s.acquire)
        .sum();
    assert_eq!(acquired, 10);
}
