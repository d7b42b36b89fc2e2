//! `lockprof blame`, `top`'s CAUSED BY column and `flamegraph --by caused`
//! on a profile with a known answer: `slow_path` holds the lock 30 ms at a
//! time while threads wait for it in `fast_path`.

mod common;

use std::process::Command;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use lockprof::{named, ProfiledMutex, Profiler};

#[inline(never)]
fn slow_path(lock: &ProfiledMutex<u64>, start: &Barrier) {
    let mut guard = lock.lock().unwrap();
    start.wait();
    thread::sleep(Duration::from_millis(30));
    *guard += 1;
}

#[inline(never)]
fn fast_path(lock: &ProfiledMutex<u64>) {
    *lock.lock().unwrap() += 1;
}

/// Writes the profile under `dir` and returns the lock's variable name.
fn write_profile(dir: &std::path::Path) -> &'static str {
    let _turn = common::serial();
    named!(let ledger = Arc::new(ProfiledMutex::new(0u64)));
    let handle = Profiler::builder()
        .capture_pct(100.0)
        .output_pprof(dir.join("blame"))
        .flush_interval(Duration::from_secs(3600))
        .start()
        .unwrap();
    for _ in 0..3 {
        let start = Arc::new(Barrier::new(4));
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let (ledger, start) = (Arc::clone(&ledger), Arc::clone(&start));
                thread::spawn(move || {
                    start.wait();
                    fast_path(&ledger);
                })
            })
            .collect();
        slow_path(&ledger, &start);
        for w in waiters {
            w.join().unwrap();
        }
    }
    handle.stop();
    "ledger"
}

fn lockprof(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_lockprof"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "lockprof {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn blame_top_and_flamegraph_name_the_slow_holder() {
    let dir = tempfile::tempdir().unwrap();
    let lock = write_profile(dir.path());
    let dir_arg = dir.path().to_str().unwrap();

    // blame --json: slow_path is the top holder of the lock, fast_path its
    // top waiter, with about 3 x 30 ms caused per hold.
    let json: serde_json::Value =
        serde_json::from_str(&lockprof(&["blame", "--json", "--lock", lock, dir_arg])).unwrap();
    let locks = json.as_array().unwrap();
    assert_eq!(locks.len(), 1, "{json}");
    let top = &locks[0]["holders"][0];
    let names = |frames: &serde_json::Value| -> Vec<String> {
        frames
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["function"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(
        names(&top["frames"]).iter().any(|f| f.contains("slow_path")),
        "{top}"
    );
    assert!(
        names(&top["waiters"][0]["frames"])
            .iter()
            .any(|f| f.contains("fast_path")),
        "{top}"
    );
    let caused = top["caused_wait_ns"].as_u64().unwrap();
    assert!(caused >= 3 * 3 * 25_000_000, "caused {caused} ns");
    assert!(top["share"].as_f64().unwrap() > 0.9, "{top}");

    // The text form says the same.
    let text = lockprof(&["blame", dir_arg]);
    let holder = text.find("slow_path").expect("slow_path in blame");
    let waiter = text[holder..].find("waiting at:").expect("a waiter under it");
    assert!(text[holder + waiter..].contains("fast_path"), "{text}");

    // top: a CAUSED BY column naming slow_path.
    let table = lockprof(&["top", dir_arg]);
    let header = table.lines().next().unwrap();
    assert!(header.ends_with("CAUSED BY"), "{table}");
    let row = table.lines().find(|l| l.contains(lock)).expect("the lock's row");
    assert!(row.contains("slow_path"), "{table}");

    // flamegraph --by caused draws the holder.
    let svg = dir.path().join("caused.svg");
    lockprof(&[
        "flamegraph",
        "--by",
        "caused",
        "-o",
        svg.to_str().unwrap(),
        dir_arg,
    ]);
    let svg = std::fs::read_to_string(svg).unwrap();
    assert!(
        svg.contains("slow_path"),
        "no slow_path in the caused flame graph"
    );
}

#[test]
fn blame_of_a_lock_that_is_not_there_names_the_locks_that_are() {
    let dir = tempfile::tempdir().unwrap();
    write_profile(dir.path());
    let out = Command::new(env!("CARGO_BIN_EXE_lockprof"))
        .args(["blame", "--lock", "nosuch", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nosuch") && err.contains("ledger"), "{err}");
}
