//! The real client, `go tool pprof`, fetches a live profile of the next
//! two seconds from the on-demand endpoint (feature `http`) while the
//! program runs, and reads the lock names and Datadog's four lock sample
//! types in it.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{http, serial};
use lockprof::{named, ProfiledMutex, ProfiledRwLock};

#[test]
fn go_tool_pprof_reads_the_next_two_seconds_of_a_running_program() {
    let go = Command::new("go").arg("version").output();
    assert!(
        go.as_ref().is_ok_and(|o| o.status.success()),
        "`go` is not installed: this test runs `go tool pprof` against the on-demand endpoint. \
         Install Go (Debian: `apt-get install golang-go`) and re-run."
    );
    let _turn = serial();
    named!(let session_lock = ProfiledMutex::new(0u64));
    named!(let cache_lock = ProfiledRwLock::new(0u64));
    let (handle, addr, dir) = http::serving_profiler();
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");
    let url = format!("http://{addr}/debug/pprof/lock?seconds=2");

    let done = AtomicBool::new(false);
    let out = std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    *session_lock.lock().unwrap() += 1;
                    *cache_lock.write().unwrap() += 1;
                    let _ = *cache_lock.read().unwrap();
                    std::thread::sleep(Duration::from_micros(200));
                }
            });
        }
        let out = Command::new("go")
            .args(["tool", "pprof", "-raw", &url])
            .env("PPROF_TMPDIR", dir.path())
            .output()
            .expect("run go tool pprof");
        done.store(true, Ordering::Relaxed);
        out
    });
    handle.stop();

    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "go tool pprof {url} failed: {stderr}");
    for t in [
        "lock-acquire/count",
        "lock-acquire-wait/nanoseconds",
        "lock-release/count",
        "lock-release-hold/nanoseconds",
    ] {
        assert!(stdout.contains(t), "{t} missing from:\n{stdout}");
    }
    for name in [session_lock.site().label(), cache_lock.site().label()] {
        assert!(
            stdout.contains(&format!("lock name:[{name}]")),
            "{name} missing from:\n{stdout}"
        );
    }
    // The profile covers the two seconds asked for (`Duration: 2.00`), not
    // the time since the start.
    let duration = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Duration: "))
        .unwrap_or_else(|| panic!("no Duration in:\n{stdout}"));
    assert!(
        duration.starts_with("2") || duration.starts_with("1.9"),
        "Duration: {duration}"
    );
}
