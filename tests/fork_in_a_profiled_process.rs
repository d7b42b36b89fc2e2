//! `fork()` in a profiled process: the child locks, exits, and even drops its
//! copy of the profiler handle without hanging; the parent keeps profiling.

mod common;

use lockprof::{named, ProfiledMutex, Profiler};
use std::time::{Duration, Instant};

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
    let start = Instant::now();
    let mut status = 0;
    loop {
        // SAFETY: waits for the child forked above.
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
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child status {status}"
    );

    *shared.lock().unwrap() += 1;
    handle.stop();
    let profile = common::merged(&common::profiles_in(dir.path()));
    let (acquires, ..) = common::totals(&profile, &shared.site().label());
    assert_eq!(acquires, 2, "the parent's two acquisitions only");
}
