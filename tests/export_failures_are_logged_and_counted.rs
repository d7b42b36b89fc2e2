//! File output that cannot be written — a full disk, a directory that cannot
//! be created or written, a directory deleted mid-run — costs a logged error
//! and a count in `ProfilerHandle::stats().profiles_failed`; the program and
//! the profiler carry on.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::faults::{is_root, DiskFull};
use common::{profiles_in, serial};
use lockprof::{named, ProfiledMutex, Profiler};

fn capture_logs() {
    common::logs::start();
}

fn errors_logged() -> Vec<String> {
    common::logs::at(log::Level::Error)
}

named!(static WORK: ProfiledMutex<u64> = ProfiledMutex::new(0));

fn work() {
    for _ in 0..1000 {
        *WORK.lock().unwrap() += 1;
    }
}

/// Three flushes into `builder`'s output, working between them.
fn three_flushes(builder: lockprof::ProfilerBuilder) -> lockprof::ProfilerStats {
    let handle = builder
        .capture_pct(100.0)
        .flush_interval(Duration::from_secs(3600))
        .start()
        .unwrap();
    for _ in 0..2 {
        work();
        handle.flush();
    }
    work();
    handle.stop()
}

#[test]
fn a_full_disk_is_logged_and_counted() {
    let _turn = serial();
    capture_logs();
    let stats = three_flushes(Profiler::builder().export(DiskFull));
    assert_eq!((stats.profiles_exported, stats.profiles_failed), (0, 3));
    let last = stats.last_error.expect("last error");
    assert!(last.contains("/dev/full"), "{last}");
    let errors = errors_logged();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(errors[0].contains("No space left on device"), "{errors:?}");
    // The program carries on, locks included.
    work();
}

#[test]
fn file_output_under_dev_full_is_logged_and_counted() {
    let _turn = serial();
    capture_logs();
    // `/dev/full` is a device, not a directory: nothing can be created under it.
    let stats = three_flushes(Profiler::builder().output_pprof("/dev/full/profile"));
    assert_eq!((stats.profiles_exported, stats.profiles_failed), (0, 3));
    assert_eq!(errors_logged().len(), 3);
    assert!(stats.last_error.unwrap().contains("/dev/full/profile"));
}

#[test]
fn an_unwritable_directory_is_logged_and_counted() {
    let _turn = serial();
    capture_logs();
    // Root ignores permission bits, so use a place no one can write: procfs.
    let dir = tempfile::tempdir().unwrap();
    let unwritable: PathBuf = if is_root() {
        PathBuf::from("/proc/self/lockprof-cannot-write-here")
    } else {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o555)).unwrap();
        dir.path().to_path_buf()
    };
    let stats = three_flushes(Profiler::builder().output_pprof(unwritable.join("profile")));
    assert_eq!((stats.profiles_exported, stats.profiles_failed), (0, 3));
    let errors = errors_logged();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(errors.iter().all(|e| e.contains("lockprof")), "{errors:?}");
}

#[test]
fn a_directory_deleted_mid_run_is_created_again() {
    let _turn = serial();
    capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("deleted");
    let handle = Profiler::builder()
        .capture_pct(100.0)
        .output_pprof(out.join("profile"))
        .flush_interval(Duration::from_secs(3600))
        .start()
        .unwrap();
    work();
    handle.flush();
    assert_eq!(profiles_in(&out).len(), 1);
    std::fs::remove_dir_all(&out).unwrap();
    work();
    handle.flush();
    work();
    let stats = handle.stop();
    assert_eq!((stats.profiles_exported, stats.profiles_failed), (3, 0));
    assert_eq!(profiles_in(&out).len(), 2, "both later profiles are written");
    assert!(errors_logged().is_empty());
}

#[test]
fn a_directory_replaced_by_a_file_mid_run_is_logged_and_counted() {
    let _turn = serial();
    capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("replaced");
    let handle = Profiler::builder()
        .capture_pct(100.0)
        .output_pprof(out.join("profile"))
        .flush_interval(Duration::from_secs(3600))
        .start()
        .unwrap();
    work();
    handle.flush();
    std::fs::remove_dir_all(&out).unwrap();
    std::fs::write(&out, b"not a directory").unwrap();
    work();
    handle.flush();
    let mid = handle.stats();
    assert_eq!((mid.profiles_exported, mid.profiles_failed), (1, 1));
    // Once the directory is back, profiles are written again.
    std::fs::remove_file(&out).unwrap();
    work();
    let stats = handle.stop();
    assert_eq!((stats.profiles_exported, stats.profiles_failed), (2, 1));
    assert_eq!(errors_logged().len(), 1);
    assert!(Path::new(&out).is_dir());
}
