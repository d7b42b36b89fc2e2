//! The written file is a gzip'd pprof with Datadog's lock sample types and
//! labels (then lockprof's own `lock-caused-wait`, which uploads leave out:
//! see `upload_reaches_datadog_test_agent.rs`), deduplicated tables, and the
//! metadata pprof readers expect; and the reference reader, `go tool pprof`,
//! opens it.

mod common;

use common::{profiles_in, serial};
use lockprof::read::ProfileFileName;
use lockprof::{named, ProfiledMutex, ProfiledRwLock, Profiler};
use prost::Message;
use std::collections::HashSet;
use std::io::Read;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

#[allow(dead_code, clippy::all)]
#[path = "../src/pprof/proto.rs"]
mod proto;

/// Writes one profile with a named mutex and a named RwLock; returns its path
/// and the lock labels.
fn write_profile(dir: &std::path::Path) -> (PathBuf, Vec<String>) {
    let _turn = serial();
    named!(let session_lock = ProfiledMutex::new(0));
    named!(let cache_lock = ProfiledRwLock::new(0));
    let handle = Profiler::builder()
        .capture_pct(100.0)
        .output_pprof(dir.join("fmt"))
        .flush_interval(Duration::from_secs(3600))
        .start()
        .unwrap();
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                for _ in 0..100 {
                    *session_lock.lock().unwrap() += 1;
                    *cache_lock.write().unwrap() += 1;
                    let _ = *cache_lock.read().unwrap();
                }
            });
        }
    });
    handle.stop();
    let files = profiles_in(dir);
    assert_eq!(files.len(), 1, "{files:?}");
    (
        files[0].clone(),
        vec![session_lock.site().label(), cache_lock.site().label()],
    )
}

#[test]
fn sample_types_labels_and_tables_are_as_datadog_writes_them() {
    let dir = tempfile::tempdir().unwrap();
    let (path, names) = write_profile(dir.path());
    let name = path.file_name().unwrap().to_str().unwrap();
    let parsed = ProfileFileName::parse(name).unwrap();
    assert_eq!(
        (parsed.prefix, parsed.pid, parsed.extension),
        ("fmt", std::process::id(), "pprof"),
        "{name}"
    );

    let gz = std::fs::read(&path).unwrap();
    assert_eq!(&gz[..2], &[0x1f, 0x8b], "not gzip");
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(gz.as_slice())
        .read_to_end(&mut raw)
        .unwrap();
    let p = proto::Profile::decode(raw.as_slice()).unwrap();
    let s = |i: i64| p.string_table[i as usize].as_str();

    assert_eq!(s(0), "");
    let types: Vec<(&str, &str)> = p.sample_type.iter().map(|t| (s(t.r#type), s(t.unit))).collect();
    assert_eq!(
        types,
        [
            ("lock-acquire", "count"),
            ("lock-acquire-wait", "nanoseconds"),
            ("lock-release", "count"),
            ("lock-release-hold", "nanoseconds"),
            ("lock-caused-wait", "nanoseconds"),
        ]
    );
    let period_type = p.period_type.unwrap();
    assert_eq!(
        (s(period_type.r#type), s(period_type.unit)),
        ("lock-acquire", "count")
    );
    assert_eq!(p.period, 1);
    assert!(p.time_nanos > 1_600_000_000_000_000_000);
    assert!(p.duration_nanos > 0);

    // Tables are deduplicated.
    let unique: HashSet<&String> = p.string_table.iter().collect();
    assert_eq!(unique.len(), p.string_table.len(), "duplicate strings");
    let funcs: HashSet<(i64, i64)> = p.function.iter().map(|f| (f.name, f.filename)).collect();
    assert_eq!(funcs.len(), p.function.len(), "duplicate functions");
    let ids: HashSet<u64> = p.location.iter().map(|l| l.id).collect();
    assert_eq!(ids.len(), p.location.len());

    // Every sample has the five values and the lock and thread labels.
    for sample in &p.sample {
        assert_eq!(sample.value.len(), 5);
        let keys: Vec<&str> = sample.label.iter().map(|l| s(l.key)).collect();
        for key in ["lock name", "thread id", "thread native id", "thread name"] {
            assert!(keys.contains(&key), "sample without {key:?}: {keys:?}");
        }
        for l in &sample.label {
            match s(l.key) {
                "thread id" | "thread native id" => assert!(l.num > 0 && l.str == 0),
                "lock name" | "thread name" | "lock mode" => assert!(l.str > 0),
                "stack id" | "waiter stack id" => assert!(l.num > 0 && l.str == 0),
                other => panic!("unexpected label {other}"),
            }
        }
        assert!(!sample.location_id.is_empty());
    }
    let labels: HashSet<&str> = p
        .sample
        .iter()
        .flat_map(|x| x.label.iter())
        .filter(|l| s(l.key) == "lock name")
        .map(|l| s(l.str))
        .collect();
    for n in &names {
        assert!(labels.contains(n.as_str()), "{n} not in {labels:?}");
    }
}

#[test]
fn go_tool_pprof_reads_the_profile() {
    let go = Command::new("go").arg("version").output();
    assert!(
        go.as_ref().is_ok_and(|o| o.status.success()),
        "`go` is not installed: this test runs `go tool pprof` on an exported profile. \
         Install Go (Debian: `apt-get install golang-go`) and re-run."
    );
    let dir = tempfile::tempdir().unwrap();
    let (path, names) = write_profile(dir.path());
    let out = Command::new("go")
        .args(["tool", "pprof", "-raw"])
        .arg(&path)
        .env("PPROF_TMPDIR", dir.path())
        .output()
        .expect("run go tool pprof");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "go tool pprof failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for t in [
        "lock-acquire/count",
        "lock-acquire-wait/nanoseconds",
        "lock-release/count",
        "lock-release-hold/nanoseconds",
        // lockprof's own blame type, after Datadog's four.
        "lock-caused-wait/nanoseconds",
    ] {
        assert!(stdout.contains(t), "{t} missing from:\n{stdout}");
    }
    for n in &names {
        assert!(
            stdout.contains(&format!("lock name:[{n}]")),
            "{n} missing from:\n{stdout}"
        );
    }
    assert!(stdout.contains("thread native id:["));
    // Which totals are exact, as comments: at 100 % capture, all of them.
    for (n, mode) in [
        (&names[0], ""),
        (&names[1], " mode=read"),
        (&names[1], " mode=write"),
    ] {
        let comment = "lockprof accuracy: acquire=exact wait=exact release=exact hold=exact contended=";
        assert!(
            stdout
                .lines()
                .any(|l| l.contains(comment) && l.ends_with(&format!("{mode} lock={n}"))),
            "no accuracy comment for {n}{mode} in:\n{stdout}"
        );
    }

    // And its text report, as a user reads it.
    let top = Command::new("go")
        .args(["tool", "pprof", "-top", "-sample_index=lock-acquire"])
        .arg(&path)
        .env("PPROF_TMPDIR", dir.path())
        .output()
        .unwrap();
    assert!(top.status.success(), "{}", String::from_utf8_lossy(&top.stderr));
    assert!(String::from_utf8_lossy(&top.stdout).contains("write_profile"));
}
