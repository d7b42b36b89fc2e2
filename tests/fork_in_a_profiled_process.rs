//! `fork()` in a profiled process: the child locks, exits, and even drops its
//! copy of the profiler handle without hanging; the parent keeps profiling.
//! A child may also start a profiler of its own, even when a thread of the
//! parent held the profiler's internal locks at the fork.

mod common;

use lockprof::{named, ProfiledMutex, Profiler};
use std::time::{Duration, Instant};

/// Waits for the child `pid` (20 s at most: a hung child is killed and the
/// test fails) and returns its exit code.
fn exit_code_of(pid: libc::pid_t) -> i32 {
    let start = Instant::now();
    let mut status = 0;
    loop {
        // SAFETY: waits for a child of this process.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            break;
        }
        if start.elapsed() > Duration::from_secs(20) {
            // SAFETY: kills the hung child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("the forked child hung");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(libc::WIFEXITED(status), "child status {status}");
    libc::WEXITSTATUS(status)
}

#[test]
fn a_forked_child_neither_hangs_nor_records() {
    let _turn = common::serial();
    let dir = tempfile::tempdir().unwrap();
    named!(let shared = ProfiledMutex::new(0u32));
    let handle = Profiler::builder()
        .capture_pct(100.0)
        .output_pprof(dir.path().join("fork"))
        .start()
        .unwrap();
    *shared.lock().unwrap() += 1;

    // SAFETY: the child only locks a profiled mutex, drops the handle and
    // calls _exit; the parent waits for it.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        for _ in 0..10_000 {
            *shared.lock().unwrap() += 1;
        }
        drop(handle); // must not wait for the parent's profiler thread
                      // SAFETY: ends the child without running the test harness's exit.
        unsafe { libc::_exit(0) };
    }
    assert_eq!(exit_code_of(pid), 0);

    *shared.lock().unwrap() += 1;
    handle.stop();
    let profile = common::merged(&common::profiles_in(dir.path()));
    let (acquires, ..) = common::totals(&profile, &shared.site().label());
    assert_eq!(acquires, 2, "the parent's two acquisitions only");
}

/// The parent's profiler thread takes the recorder's and the stats' locks at
/// every poll and flush; a fork in that instant used to leave them locked for
/// good in the child, and a profiler started there hung.
#[cfg(feature = "fault-injection")]
#[test]
fn a_forked_child_starts_its_own_profiler_though_the_parent_held_its_locks() {
    let _turn = common::serial();
    let parent_dir = tempfile::tempdir().unwrap();
    let child_dir = tempfile::tempdir().unwrap();
    named!(let shared = ProfiledMutex::new(0u32));
    let handle = Profiler::builder()
        .capture_pct(100.0)
        .output_pprof(parent_dir.path().join("parent"))
        .start()
        .unwrap();
    *shared.lock().unwrap() += 1;

    let holder = std::thread::spawn(|| lockprof::hold_profiler_locks(Duration::from_secs(2)));
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: the child starts and stops a profiler, locks a profiled mutex
    // and calls _exit; the parent waits for it.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        std::mem::forget(handle); // the parent's
        let child = Profiler::builder()
            .capture_pct(100.0)
            .output_pprof(child_dir.path().join("child"))
            .start();
        let code = match child {
            Ok(child) => {
                for _ in 0..1000 {
                    *shared.lock().unwrap() += 1;
                }
                if child.stop().profiles_exported > 0 {
                    0
                } else {
                    2
                }
            }
            Err(_) => 3,
        };
        // SAFETY: ends the child without running the test harness's exit.
        unsafe { libc::_exit(code) };
    }
    assert_eq!(exit_code_of(pid), 0, "2: no profile written, 3: start failed");
    holder.join().unwrap();

    let child = common::merged(&common::profiles_in(child_dir.path()));
    let (acquires, ..) = common::totals(&child, &shared.site().label());
    assert_eq!(acquires, 1000, "the child's own acquisitions");
    *shared.lock().unwrap() += 1;
    handle.stop();
    let parent = common::merged(&common::profiles_in(parent_dir.path()));
    let (acquires, ..) = common::totals(&parent, &shared.site().label());
    assert_eq!(acquires, 2, "the parent's two acquisitions only");
}
