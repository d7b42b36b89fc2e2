//! Lock names with unicode, quotes, newlines, control characters and 10 kB of
//! text come back from the written pprof exactly as given, and through the
//! `lockprof` command.

mod common;

use common::{merged, profiles_in, serial, totals};
use lockprof::read::LockProfile;
use lockprof::{ProfiledMutex, Profiler};
use std::path::Path;

fn profile_into(dir: &Path, work: impl FnOnce()) -> LockProfile {
    let _turn = serial();
    let handle = Profiler::builder()
        .capture_pct(100.0)
        .output_pprof(dir.join("names"))
        .start()
        .unwrap();
    work();
    handle.stop();
    merged(&profiles_in(dir))
}

fn unusual_names() -> Vec<&'static str> {
    let long: String = "lock-".repeat(2048); // 10 kB
    vec![
        "ünïcødé_锁_🔒",
        "with \"double\" and 'single' quotes",
        "new\nline and\ttab and \r return",
        "back\\slash, colon: and = sign",
        "nul \0 and escape \u{1b}[31m",
        "",
        " ",
        Box::leak(long.into_boxed_str()),
    ]
}

#[test]
fn unusual_names_are_written_and_read_back_unchanged() {
    let names = unusual_names();
    let dir = tempfile::tempdir().unwrap();
    let locks: Vec<ProfiledMutex<u32>> = names.iter().map(|&n| ProfiledMutex::new(0).named(n)).collect();
    let profile = profile_into(dir.path(), || {
        for (i, lock) in locks.iter().enumerate() {
            for _ in 0..=i {
                *lock.lock().unwrap() += 1;
            }
        }
    });
    for (i, (lock, name)) in locks.iter().zip(&names).enumerate() {
        let label = lock.site().label();
        assert!(label.ends_with(name), "{label:?} does not end with {name:?}");
        let (acquires, _, releases, _) = totals(&profile, &label);
        assert_eq!(
            (acquires, releases),
            (i as i64 + 1, i as i64 + 1),
            "lock named {:?}",
            &name[..name.len().min(40)]
        );
    }
}

#[cfg(feature = "cli")]
#[test]
fn unusual_names_come_out_of_the_lockprof_command_unchanged() {
    let names = unusual_names();
    let dir = tempfile::tempdir().unwrap();
    let locks: Vec<ProfiledMutex<u32>> = names.iter().map(|&n| ProfiledMutex::new(0).named(n)).collect();
    profile_into(dir.path(), || {
        for lock in &locks {
            *lock.lock().unwrap() += 1;
        }
    });
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lockprof"))
        .args(["names", "--json"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let listed: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["lock"].as_str().unwrap())
        .collect();
    for lock in &locks {
        let label = lock.site().label();
        assert!(
            listed.contains(&label.as_str()),
            "{:?} not listed",
            &label[..label.len().min(60)]
        );
    }
}
