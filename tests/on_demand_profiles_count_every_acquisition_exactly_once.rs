//! On-demand profiles (feature `http`) are exact at 100 % capture: a
//! `?seconds=N` window counts exactly the acquisitions made while it was
//! open, several windows open at once each count theirs, the profile since
//! the start counts everything so far, and the periodic files written
//! meanwhile still count every acquisition exactly once.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{http, logs, merged, profiles_in, serial, totals};
use lockprof::read::LockProfile;
use lockprof::{named, ProfiledMutex, Profiler};

const THREADS: usize = 4;

/// `n` acquisitions of `lock` by each of [`THREADS`] threads, contending.
fn acquire(lock: &Arc<ProfiledMutex<u64>>, n: usize) {
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                for _ in 0..n {
                    *lock.lock().unwrap() += 1;
                }
            });
        }
    });
}

fn profile_of(response: &http::Response, what: &str) -> LockProfile {
    assert_eq!(
        response.status,
        200,
        "{what}: {} {}",
        response.head,
        response.text()
    );
    LockProfile::from_bytes(&response.body).unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Waits until the profiler has logged `count` lines containing `needle`.
fn wait_for_log(needle: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while logs::at(log::Level::Debug)
        .iter()
        .filter(|m| m.contains(needle))
        .count()
        < count
    {
        assert!(
            Instant::now() < deadline,
            "no {count} log lines with {needle:?}:\n{}",
            logs::all()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Panics unless every window asked for is still open: the acquisitions
/// made before this call are then inside them.
fn assert_windows_still_open() {
    let logged = logs::all();
    assert!(
        !logged.contains("on-demand profiles ending"),
        "a window ended before the test's acquisitions were done (a very slow machine?):\n{logged}"
    );
}

fn start(dir: &std::path::Path, flush: Duration) -> (lockprof::ProfilerHandle, SocketAddr) {
    let handle = Profiler::builder()
        .ignore_env()
        .capture_pct(100.0)
        .output_pprof(dir.join("on-demand"))
        .flush_interval(flush)
        .serve("127.0.0.1:0")
        .start()
        .unwrap();
    let addr = handle.http_addr().unwrap();
    (handle, addr)
}

#[test]
fn a_window_counts_the_acquisitions_inside_it_and_the_files_count_each_once() {
    let _turn = serial();
    logs::start();
    let dir = tempfile::tempdir().unwrap();
    named!(let window_lock = Arc::new(ProfiledMutex::new(0u64)));
    let name = window_lock.site().label();
    // Periodic files every 300 ms: several are cut while the window is open.
    let (handle, addr) = start(dir.path(), Duration::from_millis(300));

    // Before the window: in the files and the profile since the start only.
    acquire(&window_lock, 100);
    let window = std::thread::spawn(move || http::get(addr, "/debug/pprof/lock?seconds=2"));
    wait_for_log("(2 s) started", 1);
    let inside = 500;
    acquire(&window_lock, inside);
    assert_windows_still_open();
    let window = window.join().unwrap();
    // After it: not in the window.
    acquire(&window_lock, 50);

    let window = profile_of(&window, "the 2 s window");
    let (acquires, _, releases, _) = totals(&window, &name);
    assert_eq!(
        (acquires, releases),
        ((THREADS * inside) as i64, (THREADS * inside) as i64)
    );
    let seconds = window.duration_nanos as f64 / 1e9;
    assert!((1.9..3.0).contains(&seconds), "window of {seconds} s");
    assert!(
        window.accuracy().iter().any(|a| a.lock == name),
        "no accuracy comment for {name}: {:?}",
        window.comments
    );

    // Since the start: everything so far, then more.
    let first = profile_of(&http::get(addr, "/debug/pprof/lock"), "since the start");
    let so_far = (THREADS * (100 + inside + 50)) as i64;
    assert_eq!(totals(&first, &name).0, so_far);
    acquire(&window_lock, 25);
    let second = profile_of(&http::get(addr, "/debug/pprof/lock"), "since the start, again");
    let total = so_far + (THREADS * 25) as i64;
    assert_eq!(totals(&second, &name).0, total);
    assert!(second.duration_nanos >= first.duration_nanos);
    assert_eq!(first.time_nanos, second.time_nanos, "both start at the start");

    let stats = handle.stop();
    let files = profiles_in(dir.path());
    assert!(files.len() >= 4, "{} files: {:?}", files.len(), stats);
    let (acquires, _, releases, _) = totals(&merged(&files), &name);
    assert_eq!((acquires, releases), (total, total), "periodic files, summed");
    assert_eq!(*window_lock.lock().unwrap(), total as u64);
}

#[test]
fn windows_open_at_once_are_served_together_and_each_is_exact() {
    let _turn = serial();
    logs::start();
    let dir = tempfile::tempdir().unwrap();
    named!(let shared_lock = Arc::new(ProfiledMutex::new(0u64)));
    let name = shared_lock.site().label();
    let (handle, addr) = start(dir.path(), Duration::from_secs(3600));
    acquire(&shared_lock, 50);

    let began = Instant::now();
    let windows: Vec<_> = [2, 3, 3]
        .into_iter()
        .map(|s| std::thread::spawn(move || http::get(addr, &format!("/debug/pprof/lock?seconds={s}"))))
        .collect();
    wait_for_log(") started", 3);
    let inside = 300;
    acquire(&shared_lock, inside);
    assert_windows_still_open();
    // The profile since the start is served while the windows are open.
    let so_far = profile_of(&http::get(addr, "/debug/pprof/lock"), "since the start");
    assert_eq!(totals(&so_far, &name).0, (THREADS * (50 + inside)) as i64);
    let windows: Vec<_> = windows.into_iter().map(|w| w.join().unwrap()).collect();
    let took = began.elapsed();
    handle.stop();

    for (i, w) in windows.iter().enumerate() {
        let p = profile_of(w, &format!("window {i}"));
        let (acquires, _, releases, _) = totals(&p, &name);
        assert_eq!(
            (acquires, releases),
            ((THREADS * inside) as i64, (THREADS * inside) as i64),
            "window {i}"
        );
    }
    // Together: the longest window, not the sum of the three.
    assert!(took < Duration::from_secs(6), "three windows took {took:?}");
    let (acquires, _, _, _) = totals(&merged(&profiles_in(dir.path())), &name);
    assert_eq!(acquires, (THREADS * (50 + inside)) as i64);
}

#[test]
fn a_window_still_open_when_the_profiler_stops_is_told_so() {
    let _turn = serial();
    logs::start();
    let dir = tempfile::tempdir().unwrap();
    let (handle, addr) = start(dir.path(), Duration::from_secs(3600));
    let window = std::thread::spawn(move || http::get(addr, "/debug/pprof/lock?seconds=60"));
    wait_for_log("(60 s) started", 1);
    let stopped = Instant::now();
    handle.stop();
    let window = window.join().unwrap();
    assert!(
        stopped.elapsed() < Duration::from_secs(5),
        "stop took {:?}",
        stopped.elapsed()
    );
    assert_eq!(window.status, 503, "{}", window.text());
    assert_eq!(
        window.text(),
        "the profiler stopped before the profile was ready\n"
    );
    // And the port is free again.
    assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err());
}
