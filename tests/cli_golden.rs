//! Golden tests of the `lockprof` command: a profile written by the library
//! at 100% capture with known lock activity, then `top`, `names`, `stacks`
//! and `diff` checked row by row (counts exactly, times within tolerances);
//! and Datadog's Python profile (tests/data) opened and its lock names listed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use lockprof::read::{profile_files, run_name, Pick};
use lockprof::{named, ProfiledMutex as Mutex, Profiler};

const PYTHON_PROFILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/ddtrace-4.16-lock-profile.pprof.zst"
);

fn lockprof(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lockprof"))
        .args(args)
        .output()
        .expect("run lockprof")
}

fn stdout_of(args: &[&str]) -> String {
    let out = lockprof(args);
    assert!(
        out.status.success(),
        "lockprof {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// The lines of known activity, for the lock labels.
struct Activity {
    queue_line: u32,
    counter_line: u32,
    generic_line: u32,
    waiter_lock_line: u32,
    counter_lock_line: u32,
}

const QUEUE_HOLD: Duration = Duration::from_millis(200);
const COUNTER_HOLD: Duration = Duration::from_millis(3);
const COUNTER_ACQUISITIONS: u32 = 10;
const GENERIC_ACQUISITIONS: u32 = 3;

/// `queue`: main holds it for QUEUE_HOLD while a waiter blocks on it (2
/// acquisitions, one wait of almost QUEUE_HOLD). `counter`: 10 uncontended
/// acquisitions, each held COUNTER_HOLD. An unnamed lock: 3 acquisitions.
fn known_activity() -> Activity {
    let queue_line = line!() + 1;
    named!(let queue = Arc::new(Mutex::new(0u32)));
    let counter_line = line!() + 1;
    named!(let counter = Mutex::new(0u32));
    let generic_line = line!() + 1;
    let generic = Mutex::new(());

    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let held = queue.lock().unwrap();
    let waiter = {
        let queue = Arc::clone(&queue);
        thread::Builder::new()
            .name("golden-waiter".to_owned())
            .spawn(move || {
                started_tx.send(()).unwrap();
                let line = line!() + 1;
                *queue.lock().unwrap() += 1; // The line `stacks` shows.
                line
            })
            .unwrap()
    };
    started_rx.recv().unwrap();
    thread::sleep(QUEUE_HOLD);
    drop(held);
    let waiter_lock_line = waiter.join().unwrap();

    let counter_lock_line = line!() + 2;
    for _ in 0..COUNTER_ACQUISITIONS {
        let mut c = counter.lock().unwrap();
        *c += 1;
        thread::sleep(COUNTER_HOLD);
    }
    for _ in 0..GENERIC_ACQUISITIONS {
        drop(generic.lock().unwrap());
    }
    Activity {
        queue_line,
        counter_line,
        generic_line,
        waiter_lock_line,
        counter_lock_line,
    }
}

/// Runs the activity under a profiler at 100% and returns the prefix the
/// profile was written under.
fn write_profile(dir: &Path) -> (PathBuf, Activity) {
    let prefix = dir.join("golden");
    let profiler = Profiler::builder()
        .capture_pct(100.0)
        .output_pprof(&prefix)
        .start()
        .expect("start profiler");
    let activity = known_activity();
    let stats = profiler.stop();
    assert_eq!(stats.profiles_exported, 1, "one profile expected: {stats:?}");
    (prefix, activity)
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

struct CsvRow {
    lock: String,
    named: String,
    acquisitions: u64,
    releases: u64,
    wait_ns: u64,
    max_wait_ns: u64,
    max_wait_exact: String,
    hold_ns: u64,
    /// `acquisitions_exact` to `contended_share`, as written.
    accuracy: Vec<String>,
}

fn parse_csv(text: &str) -> Vec<CsvRow> {
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(
            "lock,named,acquisitions,releases,wait_ns,wait_share,avg_wait_ns,max_wait_ns,max_wait_exact,hold_ns,avg_hold_ns,\
             acquisitions_exact,acquisitions_se,wait_exact,wait_se_ns,hold_exact,hold_se_ns,contended,contended_share"
        )
    );
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), 19, "{l}");
            let n = |i: usize| f[i].parse::<u64>().unwrap_or_else(|_| panic!("number in {l}"));
            CsvRow {
                lock: f[0].to_owned(),
                named: f[1].to_owned(),
                acquisitions: n(2),
                releases: n(3),
                wait_ns: n(4),
                max_wait_ns: n(7),
                max_wait_exact: f[8].to_owned(),
                hold_ns: n(9),
                accuracy: f[11..].iter().map(|s| (*s).to_owned()).collect(),
            }
        })
        .collect()
}

// One test starts the profiler: only one may run per process.
#[test]
fn top_names_and_stacks_report_known_activity_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (prefix, a) = write_profile(dir.path());
    let prefix = prefix.to_str().unwrap();
    let dir_arg = dir.path().to_str().unwrap();
    let file = profile_files(dir.path(), Pick::Newest).expect("a profile file")[0].clone();
    let file = file.to_str().unwrap();

    let queue = format!("cli_golden.rs:{}:queue", a.queue_line);
    let counter = format!("cli_golden.rs:{}:counter", a.counter_line);
    let generic = format!("cli_golden.rs:{}", a.generic_line);

    // names, from the directory: sorted, marked.
    let names = stdout_of(&["names", dir_arg]);
    let mut expected = [("generic", &generic), ("named", &counter), ("named", &queue)];
    expected.sort_by(|x, y| x.1.cmp(y.1));
    let expected: String = expected.iter().map(|(k, n)| format!("{k:<8} {n}\n")).collect();
    assert_eq!(names, expected);
    assert_eq!(
        lockprof(&["names", "--expect", "queue,counter", dir_arg])
            .status
            .code(),
        Some(0)
    );
    let missing = lockprof(&["names", "--expect", "queue,no_such_lock", dir_arg]);
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&missing.stderr),
        "lockprof: expected lock names missing: no_such_lock\n"
    );

    // top --csv, from the prefix: exact counts, times within tolerances.
    let rows = parse_csv(&stdout_of(&["top", "--csv", prefix]));
    let names: Vec<&str> = rows.iter().map(|r| r.lock.as_str()).collect();
    assert_eq!(
        names,
        [queue.as_str(), counter.as_str(), generic.as_str()],
        "ranked by wait, then name"
    );
    let q = &rows[0];
    assert_eq!((q.named.as_str(), q.acquisitions, q.releases), ("true", 2, 2));
    let hold = QUEUE_HOLD.as_nanos() as u64;
    assert!(
        ms(q.wait_ns) > ms(hold) * 0.25 && ms(q.wait_ns) < ms(hold) + 2000.0,
        "queue wait {} ms",
        ms(q.wait_ns)
    );
    assert_eq!(
        (q.max_wait_ns, q.max_wait_exact.as_str()),
        (q.wait_ns, "true"),
        "one wait: the max is exact"
    );
    assert!(
        q.hold_ns >= hold && ms(q.hold_ns) < ms(hold) + 2000.0,
        "queue hold {} ms",
        ms(q.hold_ns)
    );
    // At 100 % capture every total is exact; one of the 2 acquisitions waited.
    assert_eq!(
        q.accuracy,
        ["true", "0", "true", "0", "true", "0", "1", "0.500000"],
        "queue"
    );
    let c = &rows[1];
    assert_eq!(
        (c.named.as_str(), c.acquisitions, c.releases, c.wait_ns),
        (
            "true",
            COUNTER_ACQUISITIONS as u64,
            COUNTER_ACQUISITIONS as u64,
            0
        )
    );
    let counter_hold = COUNTER_HOLD.as_nanos() as u64 * COUNTER_ACQUISITIONS as u64;
    assert!(
        c.hold_ns >= counter_hold && ms(c.hold_ns) < ms(counter_hold) + 2000.0,
        "counter hold {} ms",
        ms(c.hold_ns)
    );
    assert_eq!(
        c.accuracy,
        ["true", "0", "true", "0", "true", "0", "0", "0.000000"],
        "counter"
    );
    let g = &rows[2];
    assert_eq!(
        (g.named.as_str(), g.acquisitions, g.releases, g.wait_ns),
        (
            "false",
            GENERIC_ACQUISITIONS as u64,
            GENERIC_ACQUISITIONS as u64,
            0
        )
    );

    // top --json: the same rows.
    let json: serde_json::Value = serde_json::from_str(&stdout_of(&["top", "--json", file])).unwrap();
    let json = json.as_array().expect("an array");
    assert_eq!(json.len(), 3);
    assert_eq!(json[0]["lock"], queue.as_str());
    assert_eq!(json[0]["acquisitions"], 2);
    assert_eq!(json[0]["wait_ns"], q.wait_ns);
    assert_eq!(json[1]["lock"], counter.as_str());
    assert_eq!(json[1]["named"], true);
    assert_eq!(json[2]["named"], false);
    assert_eq!(json[0]["hold_exact"], true);
    assert_eq!(json[0]["hold_se_ns"], 0.0);
    assert_eq!(json[0]["contended"], 1);
    assert_eq!(json[0]["contended_share"], 0.5);

    // top's table, from the file: the count columns exactly.
    let table = stdout_of(&["top", "--by", "count", file]);
    let lines: Vec<Vec<&str>> = table.lines().map(|l| l.split_whitespace().collect()).collect();
    // Then CAUSED BY when the contended acquisition parked behind its
    // holder (a wait charged to the holder; see `lockprof blame`).
    let header = [
        "LOCK", "ACQUIRED", "CONT%", "WAIT", "WAIT%", "AVG", "WAIT", "MAX", "WAIT", "HOLD", "AVG", "HOLD",
    ];
    assert_eq!(lines[0][..12], header, "{table}");
    assert!(
        lines[0][12..].is_empty() || lines[0][12..] == ["CAUSED", "BY"],
        "{table}"
    );
    assert_eq!(lines.len(), 4, "{table}");
    assert_eq!(
        &lines[1][..6],
        [counter.as_str(), "10", "0.0%", "0ns", "0.0%", "0ns"],
        "{table}"
    );
    assert_eq!(
        &lines[2][..6],
        [generic.as_str(), "3", "0.0%", "0ns", "0.0%", "0ns"],
        "{table}"
    );
    assert_eq!(
        &lines[3][..5],
        [queue.as_str(), "2", "50.0%", lines[3][3], "100.0%"],
        "{table}"
    );
    assert!(!table.contains('±'), "nothing is estimated at 100 %: {table}");
    assert_eq!(
        stdout_of(&["top", "-n", "1", "--by", "hold", file])
            .lines()
            .count(),
        2
    );

    // stacks: the waiter's one stack for queue, leaf first at its lock() line.
    let stacks = stdout_of(&["stacks", "--lock", "queue", file]);
    let lines: Vec<&str> = stacks.lines().collect();
    assert!(lines[0].starts_with(&format!("{queue}  wait ")), "{stacks}");
    assert!(lines[0].ends_with("  1 stack"), "{stacks}");
    assert!(lines[1].starts_with("  100.0%  "), "{stacks}");
    assert!(lines[1].ends_with("  1 acquisition"), "{stacks}");
    // The other acquisition did not wait: counted, its stack not shown.
    assert!(
        stacks.ends_with("  (1 more acquisition with no wait: not shown)\n"),
        "{stacks}"
    );
    let leaf = lines[2].trim();
    assert!(leaf.contains("cli_golden"), "leaf frame {leaf:?}");
    assert!(
        leaf.ends_with(&format!("tests/cli_golden.rs:{}", a.waiter_lock_line)),
        "leaf frame {leaf:?}\n{stacks}"
    );
    let counter_stacks = stdout_of(&["stacks", "--lock", &counter, "--by", "count", file]);
    let lines: Vec<&str> = counter_stacks.lines().collect();
    assert_eq!(
        lines[0],
        format!("{counter}  acquisitions 10  1 stack"),
        "{counter_stacks}"
    );
    assert_eq!(lines[1], "  100.0%  10 acquisitions", "{counter_stacks}");
    assert!(
        lines[2].ends_with(&format!("tests/cli_golden.rs:{}", a.counter_lock_line)),
        "{counter_stacks}"
    );
    // Locks that never waited are named in a footer, not silently dropped.
    let all_stacks = stdout_of(&["stacks", file]);
    assert!(
        all_stacks.ends_with("\n(2 more locks with no wait: `lockprof top` lists every lock)\n"),
        "{all_stacks}"
    );
    let hold_stacks = stdout_of(&["stacks", "--by", "hold", "-n", "1", file]);
    assert!(
        hold_stacks.contains(&format!("{counter}  hold ")),
        "{hold_stacks}"
    );
    assert_eq!(
        stdout_of(&["stacks", "--lock", "counter", file]),
        "lock \"counter\" has no wait in ".to_owned() + file + "\n"
    );

    // diff of a profile with itself: no change, and --fail-over passes.
    let same = lockprof(&["diff", "--fail-over", "0", file, file]);
    assert_eq!(
        same.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&same.stderr)
    );

    // --all over the directory merges its one profile: same rows.
    assert_eq!(
        stdout_of(&["top", "--csv", "--all", dir_arg]),
        stdout_of(&["top", "--csv", file])
    );

    // A second run beside it (another pid): `top --all` says which run each
    // row is of, ranked together; --merge sums the runs.
    let run = run_name(Path::new(file));
    assert_eq!(run, format!("golden.{}", std::process::id()));
    std::fs::copy(file, dir.path().join("golden.4000000000.0.pprof")).unwrap();
    let table = stdout_of(&["top", "--all", dir_arg]);
    let lines: Vec<Vec<&str>> = table.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(&lines[0][..3], ["RUN", "LOCK", "ACQUIRED"], "{table}");
    assert_eq!(lines.len(), 7, "{table}");
    let mut queue_runs: Vec<&str> = lines[1..3].iter().map(|l| l[0]).collect();
    queue_runs.sort();
    let mut runs = [run.as_str(), "golden.4000000000"];
    runs.sort();
    assert_eq!(queue_runs, runs, "{table}");
    assert!(
        lines[1..3].iter().all(|l| l[1] == queue && l[2] == "2"),
        "{table}"
    );
    let csv = stdout_of(&["top", "--csv", "--all", dir_arg]);
    assert!(csv.starts_with("run,lock,named,"), "{csv}");
    let json: serde_json::Value =
        serde_json::from_str(&stdout_of(&["top", "--json", "--all", dir_arg])).unwrap();
    assert!(json[0]["run"].is_string(), "{json}");
    let merged = parse_csv(&stdout_of(&["top", "--csv", "--all", "--merge", dir_arg]));
    assert_eq!(merged.len(), 3);
    assert_eq!(
        (merged[0].lock.as_str(), merged[0].acquisitions),
        (queue.as_str(), 4)
    );
}

#[test]
fn python_profile_opens_and_lists_its_lock_names() {
    assert_eq!(
        stdout_of(&["names", PYTHON_PROFILE]),
        "named    lockref.py:13:request_lock\n\
         named    lockref.py:2:global_database_lock\n\
         named    lockref.py:5:user_session_lock\n\
         named    lockref.py:6:_internal_lock\n"
    );
    let rows = parse_csv(&stdout_of(&["top", "--csv", PYTHON_PROFILE]));
    assert_eq!(rows.len(), 4);
    for r in &rows {
        // 4 threads × 200 iterations, one sample per event: max wait exact.
        assert_eq!(
            (r.acquisitions, r.releases, r.max_wait_exact.as_str()),
            (800, 800, "true"),
            "{}",
            r.lock
        );
        assert!(
            r.accuracy.iter().all(String::is_empty),
            "the profile says nothing of exactness"
        );
    }
    let table = stdout_of(&["top", PYTHON_PROFILE]);
    assert!(!table.contains('±'), "{table}");
    assert!(
        table
            .lines()
            .skip(1)
            .all(|l| l.split_whitespace().nth(2) == Some("-")),
        "no contended share: {table}"
    );
    assert_eq!(
        rows[0].lock, "lockref.py:2:global_database_lock",
        "the contended one"
    );
    let stacks = stdout_of(&[
        "stacks",
        "--lock",
        "user_session_lock",
        "--by",
        "count",
        PYTHON_PROFILE,
    ]);
    assert_eq!(
        stacks.lines().take(3).collect::<Vec<_>>(),
        [
            "lockref.py:5:user_session_lock  acquisitions 800  1 stack",
            "  100.0%  800 acquisitions",
            "      UserManager.authenticate  lockref.py:8",
        ]
    );
}

#[test]
fn diff_fails_over_the_threshold_when_wait_grows() {
    let dir = tempfile::tempdir().unwrap();
    let empty_before = dir.path().join("before.pprof");
    // A lock profile with no samples: every lock of "after" is new.
    std::fs::write(&empty_before, EMPTY_LOCK_PROFILE).unwrap();
    let before = empty_before.to_str().unwrap();
    let out = lockprof(&["diff", "--fail-over", "50", before, PYTHON_PROFILE]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "lockprof: lock wait grew more than 50%: lockref.py:2:global_database_lock (new wait), \
         lockref.py:6:_internal_lock (new wait), lockref.py:5:user_session_lock (new wait), \
         lockref.py:13:request_lock (new wait)\n"
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let first: Vec<&str> = text.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        first,
        [
            "lockref.py:2:global_database_lock",
            "0ns",
            "1.72s",
            "+1.72s",
            "new",
            "0ns",
            "960ms",
            "+960ms",
            "new"
        ]
    );

    // A noise floor: only locks waiting at least --min-wait after can fail.
    let out = lockprof(&[
        "diff",
        "--fail-over",
        "50",
        "--min-wait",
        "1s",
        before,
        PYTHON_PROFILE,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "lockprof: lock wait grew more than 50%: lockref.py:2:global_database_lock (new wait)\n"
    );
    let out = lockprof(&[
        "diff",
        "--fail-over",
        "50",
        "--min-wait",
        "2s",
        before,
        PYTHON_PROFILE,
    ]);
    assert_eq!(out.status.code(), Some(0));

    // The other way round every lock's wait fell by 100%: no failure.
    let out = lockprof(&["diff", "--fail-over", "0", PYTHON_PROFILE, before]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.lines().skip(1).all(|l| l.contains("-100.0%")), "{text}");
}

/// A raw pprof with the four lock sample types and no sample (string table
/// `"", lock-acquire, count, lock-acquire-wait, nanoseconds, lock-release,
/// lock-release-hold`).
const EMPTY_LOCK_PROFILE: &[u8] = &[
    0x0a, 0x04, 0x08, 0x01, 0x10, 0x02, // sample_type lock-acquire/count
    0x0a, 0x04, 0x08, 0x03, 0x10, 0x04, // lock-acquire-wait/nanoseconds
    0x0a, 0x04, 0x08, 0x05, 0x10, 0x02, // lock-release/count
    0x0a, 0x04, 0x08, 0x06, 0x10, 0x04, // lock-release-hold/nanoseconds
    0x32, 0x00, // ""
    0x32, 0x0c, b'l', b'o', b'c', b'k', b'-', b'a', b'c', b'q', b'u', b'i', b'r', b'e', 0x32, 0x05, b'c',
    b'o', b'u', b'n', b't', 0x32, 0x11, b'l', b'o', b'c', b'k', b'-', b'a', b'c', b'q', b'u', b'i', b'r',
    b'e', b'-', b'w', b'a', b'i', b't', 0x32, 0x0b, b'n', b'a', b'n', b'o', b's', b'e', b'c', b'o', b'n',
    b'd', b's', 0x32, 0x0c, b'l', b'o', b'c', b'k', b'-', b'r', b'e', b'l', b'e', b'a', b's', b'e', 0x32,
    0x11, b'l', b'o', b'c', b'k', b'-', b'r', b'e', b'l', b'e', b'a', b's', b'e', b'-', b'h', b'o', b'l',
    b'd',
];
