//! `lockprof flamegraph` writes an SVG that a browser renders with the
//! expected frames: headless Chromium (Debian's `chromium` package) loads it
//! and dumps the DOM it built. Without Chromium this test fails, naming the
//! package to install.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use lockprof::{named, ProfiledMutex as Mutex, Profiler};

const PYTHON_PROFILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/ddtrace-4.16-lock-profile.pprof.zst"
);

fn chromium() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!("headless Chromium is needed to check the flame graph renders: apt-get install chromium");
}

/// The DOM Chromium builds from `svg`, as text.
fn render(svg: &Path) -> String {
    let profile_dir = tempfile::tempdir().unwrap();
    let dom = profile_dir.path().join("dom.html");
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ])
        .arg(format!(
            "--user-data-dir={}",
            profile_dir.path().join("profile").display()
        ))
        .arg("--dump-dom")
        .arg(format!("file://{}", svg.display()))
        .stdout(std::fs::File::create(&dom).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish rendering {} in 120 s", svg.display());
        }
        thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "chromium failed on {}: {status}", svg.display());
    let dom = std::fs::read_to_string(&dom).unwrap();
    assert!(
        dom.contains("<svg") && dom.contains("</svg>"),
        "no SVG in the DOM:\n{dom}"
    );
    assert!(
        !dom.contains("This page contains the following errors"),
        "the SVG did not parse:\n{dom}"
    );
    dom
}

/// The frame names (the text of each `<title>` before its value).
fn frames(dom: &str) -> Vec<String> {
    dom.split("<title>")
        .skip(1)
        .filter_map(|t| t.split("</title>").next())
        .map(|t| t.rsplit_once(" (").map_or(t, |(name, _)| name).to_owned())
        .collect()
}

fn flamegraph(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_lockprof"))
        .arg("flamegraph")
        .args(args)
        .output()
        .expect("run lockprof");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn python_profile_hold_flamegraph_renders_each_lock_over_its_callers() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("hold.svg");
    flamegraph(&["--by", "hold", "-o", svg.to_str().unwrap(), PYTHON_PROFILE]);
    let frames = frames(&render(&svg));
    for expected in [
        "lockref.py:2:global_database_lock",
        "lockref.py:5:user_session_lock",
        "lockref.py:6:_internal_lock",
        "lockref.py:13:request_lock",
        "UserManager.authenticate lockref.py:8",
        "worker lockref.py:21",
        "Thread._bootstrap threading.py:1002",
    ] {
        assert!(
            frames.iter().any(|f| f == expected),
            "no frame {expected:?} in {frames:?}"
        );
    }
}

#[test]
fn library_profile_wait_flamegraph_renders_the_lock_and_the_frame_that_waited() {
    let dir = tempfile::tempdir().unwrap();
    let profiler = Profiler::builder()
        .capture_pct(100.0)
        .output_pprof(dir.path().join("flame"))
        .start()
        .expect("start profiler");
    let lock_line = line!() + 1;
    named!(let flame_lock = Arc::new(Mutex::new(0u32)));
    let held = flame_lock.lock().unwrap();
    let waiter = {
        let flame_lock = Arc::clone(&flame_lock);
        thread::spawn(move || waits_for_the_lock(&flame_lock))
    };
    // Long enough for the waiter to block even on a loaded machine.
    thread::sleep(Duration::from_millis(200));
    drop(held);
    let wait_line = waiter.join().unwrap();
    profiler.stop();

    let svg = dir.path().join("wait.svg");
    flamegraph(&[
        "--by",
        "wait",
        "-o",
        svg.to_str().unwrap(),
        dir.path().to_str().unwrap(),
    ]);
    let frames = frames(&render(&svg));
    let lock = format!("cli_flamegraph_renders_in_chromium.rs:{lock_line}:flame_lock");
    let leaf = format!("waits_for_the_lock cli_flamegraph_renders_in_chromium.rs:{wait_line}");
    assert!(frames.contains(&lock), "no frame {lock:?} in {frames:?}");
    assert!(
        frames.iter().any(|f| f.ends_with(&leaf)),
        "no frame {leaf:?} in {frames:?}"
    );
}

#[inline(never)]
fn waits_for_the_lock(lock: &Mutex<u32>) -> u32 {
    let line = line!() + 1;
    *lock.lock().unwrap() += 1; // The frame the flame graph shows.
    line
}
