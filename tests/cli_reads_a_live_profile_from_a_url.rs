//! The `lockprof` command takes the URL of a running program's on-demand
//! endpoint as an input, as `go tool pprof` does
//! (`lockprof top http://127.0.0.1:6061/debug/pprof/lock?seconds=5`), and a
//! URL that fails gets one line naming the URL and what failed.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{http, serial};
use lockprof::{named, ProfiledMutex};

fn lockprof(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lockprof"))
        .args(args)
        .output()
        .expect("run lockprof")
}

/// Exit code 2, nothing on stdout, and this one line on stderr.
fn fails_with(args: &[&str], expected: &str) {
    let out = lockprof(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "lockprof {args:?}: {stderr}");
    assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(stderr, format!("lockprof: {expected}\n"));
}

#[test]
fn top_reads_the_next_second_of_a_running_program_and_bad_urls_say_why() {
    let _turn = serial();
    named!(let request_lock = ProfiledMutex::new(0u64));
    let (handle, addr, _dir) = http::serving_profiler();
    let window = format!("http://{addr}/debug/pprof/lock?seconds=1");
    let since_start = format!("http://{addr}/debug/pprof/lock");

    let done = AtomicBool::new(false);
    let (top, json) = std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                *request_lock.lock().unwrap() += 1;
                std::thread::sleep(Duration::from_micros(500));
            }
        });
        let top = lockprof(&["top", &window]);
        let json = lockprof(&["top", "--json", &since_start]);
        done.store(true, Ordering::Relaxed);
        (top, json)
    });
    let name = request_lock.site().label();
    let stdout = String::from_utf8_lossy(&top.stdout);
    assert!(top.status.success(), "{}", String::from_utf8_lossy(&top.stderr));
    assert!(stdout.starts_with("LOCK "), "{stdout}");
    assert!(
        stdout.lines().any(|l| l.starts_with(&name)),
        "no row for {name}:\n{stdout}"
    );
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let row = json
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["lock"] == name.as_str()))
        .unwrap_or_else(|| panic!("no {name} in {json}"));
    assert!(row["acquisitions"].as_u64().is_some_and(|n| n > 0), "{row}");

    // What the endpoint refuses, said by the command.
    let bad = format!("http://{addr}/debug/pprof/lock?seconds=abc");
    fails_with(
        &["top", &bad],
        &format!(
            "{bad}: the server answered 400 Bad Request: seconds=\"abc\" is not valid: \
             expected a whole number of seconds from 1 to 3600"
        ),
    );
    let missing = format!("http://{addr}/debug/pprof/heap");
    let out = lockprof(&["stacks", &missing]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.starts_with(&format!(
            "lockprof: {missing}: the server answered 404 Not Found: nothing at /debug/pprof/heap"
        )),
        "{stderr}"
    );
    handle.stop();

    // Nothing listens there any more.
    fails_with(
        &["top", &since_start],
        &format!("{since_start}: cannot connect to {addr}: Connection refused (os error 111)"),
    );
    fails_with(
        &["top", "https://127.0.0.1:1/debug/pprof/lock"],
        "https://127.0.0.1:1/debug/pprof/lock: https is not supported: lockprof fetches http:// URLs \
         (the endpoint serves plain HTTP)",
    );
}
