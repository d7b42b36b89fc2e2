//! Shared helpers: run a workload under a profiler and read back what it wrote.
#![allow(dead_code)]

pub mod faults;
pub mod http;
pub mod logs;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use lockprof::read::{labels, profile_files, LockProfile, LockSample, Pick};
use lockprof::Profiler;

/// One profiler per process: tests in one binary take turns.
pub fn serial() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

/// Every profile file under `dir`, oldest first; none if there is none.
pub fn profiles_in(dir: &Path) -> Vec<PathBuf> {
    profile_files(dir, Pick::All).unwrap_or_default()
}

/// Runs `work` under a profiler at `capture_pct` and returns every sample it
/// wrote, all files merged.
pub fn profile(capture_pct: f64, work: impl FnOnce()) -> LockProfile {
    profile_with(Profiler::builder().capture_pct(capture_pct), work)
}

/// As [`profile`], with a builder configured by the caller.
pub fn profile_with(builder: lockprof::ProfilerBuilder, work: impl FnOnce()) -> LockProfile {
    let _turn = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let handle = builder
        .output_pprof(dir.path().join("test"))
        .flush_interval(Duration::from_secs(3600))
        .start()
        .expect("start profiler");
    work();
    handle.stop();
    merged(&profiles_in(dir.path()))
}

/// Reads and concatenates profiles.
pub fn merged(files: &[PathBuf]) -> LockProfile {
    assert!(!files.is_empty(), "no profile was written");
    let mut all = LockProfile::from_file(&files[0]).expect("read profile");
    for f in &files[1..] {
        let p = LockProfile::from_file(f).expect("read profile");
        all.samples.extend(p.samples);
        all.comments.extend(p.comments);
    }
    all
}

/// Sum of each value over a lock's samples: (acquire, wait, release, hold).
pub fn totals(profile: &LockProfile, lock_name: &str) -> (i64, i64, i64, i64) {
    profile.samples_of(lock_name).fold((0, 0, 0, 0), |t, s| {
        (
            t.0 + s.acquire,
            t.1 + s.acquire_wait_ns,
            t.2 + s.release,
            t.3 + s.release_hold_ns,
        )
    })
}

/// Like [`totals`], restricted to samples with `lock mode` = `mode`.
pub fn totals_for_mode(profile: &LockProfile, lock_name: &str, mode: &str) -> (i64, i64, i64, i64) {
    profile
        .samples_of(lock_name)
        .filter(|s| s.label_str(labels::LOCK_MODE) == Some(mode))
        .fold((0, 0, 0, 0), |t, s| {
            (
                t.0 + s.acquire,
                t.1 + s.acquire_wait_ns,
                t.2 + s.release,
                t.3 + s.release_hold_ns,
            )
        })
}

/// `<this file name>:<line>:<name>`, as the profile labels it.
pub fn label(file: &str, line: u32, name: &str) -> String {
    let file = Path::new(file).file_name().unwrap().to_str().unwrap();
    if name.is_empty() {
        format!("{file}:{line}")
    } else {
        format!("{file}:{line}:{name}")
    }
}

/// The leaf frame of a sample.
pub fn leaf(sample: &LockSample) -> &lockprof::read::Frame {
    sample.frames.first().expect("sample has a stack")
}

/// The caused wait charged to holders of `lock` whose stack has `function`,
/// in nanoseconds (`lockprof blame`'s rows, summed).
pub fn caused_by(blame: &[lockprof::read::Blame], lock: &str, function: &str) -> f64 {
    blame
        .iter()
        .filter(|b| b.lock_name == lock && b.holder.iter().any(|f| f.function.contains(function)))
        .map(|b| b.caused_wait_ns as f64)
        .sum()
}
