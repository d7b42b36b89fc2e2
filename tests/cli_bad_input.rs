//! Bad input never panics the `lockprof` command: every kind of broken file
//! gets one line on stderr naming the file and the problem, and exit code 2.

use std::io::Write;
use std::path::Path;
use std::process::Command;

const PYTHON_PROFILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/ddtrace-4.16-lock-profile.pprof.zst"
);

/// Protobuf encoding, just enough to write profiles by hand.
fn varint(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn bytes_field(tag: u64, payload: &[u8], out: &mut Vec<u8>) {
    varint(tag << 3 | 2, out);
    varint(payload.len() as u64, out);
    out.extend_from_slice(payload);
}

fn value_type(type_index: u64, unit_index: u64) -> Vec<u8> {
    let mut m = Vec::new();
    varint(1 << 3, &mut m);
    varint(type_index, &mut m);
    varint(2 << 3, &mut m);
    varint(unit_index, &mut m);
    m
}

/// A raw pprof with these sample types (as string indexes) and strings.
fn profile(sample_types: &[(u64, u64)], strings: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for &(t, u) in sample_types {
        bytes_field(1, &value_type(t, u), &mut out);
    }
    for s in strings {
        bytes_field(6, s.as_bytes(), &mut out);
    }
    out
}

fn lock_profile() -> Vec<u8> {
    profile(
        &[(1, 2), (3, 4)],
        &["", "lock-acquire", "count", "lock-acquire-wait", "nanoseconds"],
    )
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// Runs `lockprof <args>` and checks: exit code 2, nothing on stdout, one
/// line on stderr, equal to `expected`.
fn fails_with(args: &[&str], expected: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_lockprof"))
        .args(args)
        .output()
        .expect("run lockprof");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "lockprof {args:?}: {stderr}");
    assert!(
        out.stdout.is_empty(),
        "lockprof {args:?} printed {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    assert_eq!(stderr.trim_end(), expected, "lockprof {args:?}");
}

fn write(dir: &Path, name: &str, data: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn missing_empty_and_non_profile_files_are_named_with_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.pprof");
    let missing = missing.to_str().unwrap();
    fails_with(
        &["top", missing],
        &format!("lockprof: {missing}: no such file, directory or profile prefix"),
    );
    let empty = write(dir.path(), "empty.pprof", b"");
    fails_with(&["names", &empty], &format!("lockprof: {empty}: empty file"));
    let text = write(dir.path(), "notes.txt", b"this is not a profile, just text\n");
    fails_with(
        &["stacks", &text],
        &format!("lockprof: {text}: not a pprof profile (gzip, zstd or raw protobuf): failed to decode Protobuf message: Profile.default_sample_type: invalid wire type: EndGroup (expected Varint)"),
    );
    let empty_dir = dir.path().join("empty-dir");
    std::fs::create_dir(&empty_dir).unwrap();
    let empty_dir = empty_dir.to_str().unwrap();
    fails_with(
        &["top", empty_dir],
        &format!("lockprof: {empty_dir}: directory holds no profile file (*.pprof, *.pb, *.pb.gz, *.pprof.zst, or <prefix>.<pid>.<seq>)"),
    );
    // The second of two inputs is the bad one: it is the one named.
    fails_with(
        &["top", PYTHON_PROFILE, &empty],
        &format!("lockprof: {empty}: empty file"),
    );
}

#[test]
fn truncated_files_are_named_with_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let gz = gzip(&lock_profile());
    let cut_gz = write(dir.path(), "cut.pprof.gz", &gz[..gz.len() / 2]);
    fails_with(
        &["top", &cut_gz],
        &format!("lockprof: {cut_gz}: gzip data does not decompress: incomplete deflate stream"),
    );
    let zst = std::fs::read(PYTHON_PROFILE).unwrap();
    let cut_zst = write(dir.path(), "cut.pprof.zst", &zst[..zst.len() / 2]);
    let out = Command::new(env!("CARGO_BIN_EXE_lockprof"))
        .args(["top", &cut_zst])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(&format!("lockprof: {cut_zst}: zstd data does not decompress: "))
            && stderr.lines().count() == 1,
        "{stderr}"
    );
    let raw = lock_profile();
    let cut_raw = write(dir.path(), "cut.pprof", &raw[..raw.len() - 3]);
    fails_with(
        &["top", &cut_raw],
        &format!("lockprof: {cut_raw}: not a pprof profile (gzip, zstd or raw protobuf): failed to decode Protobuf message: Profile.string_table: buffer underflow"),
    );
}

#[test]
fn profiles_without_lock_types_or_with_bad_indexes_are_named_with_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let cpu = profile(&[(1, 2), (3, 4)], &["", "samples", "count", "cpu", "nanoseconds"]);
    let cpu = write(dir.path(), "cpu.pprof.gz", &gzip(&cpu));
    fails_with(
        &["top", &cpu],
        &format!("lockprof: {cpu}: not a lock profile: it has no lock-* sample types (it has: samples/count, cpu/nanoseconds)"),
    );
    let bad_index = profile(&[(1, 99)], &["", "lock-acquire", "count"]);
    let bad_index = write(dir.path(), "bad-index.pprof", &bad_index);
    fails_with(
        &["names", &bad_index],
        &format!("lockprof: {bad_index}: corrupt profile: string index 99 is out of range (3 entries)"),
    );
}

#[test]
fn usage_errors_exit_with_code_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_lockprof"))
        .arg("top")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(env!("CARGO_BIN_EXE_lockprof"))
        .args(["top", "--by", "nonsense", PYTHON_PROFILE])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn help_has_examples_and_version_is_the_crate_version() {
    let out = Command::new(env!("CARGO_BIN_EXE_lockprof"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(
        help.contains("Examples:") && help.contains("lockprof diff --fail-over 20"),
        "{help}"
    );
    assert!(help.contains("no `timeline` command"), "{help}");
    let out = Command::new(env!("CARGO_BIN_EXE_lockprof"))
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("lockprof {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn stacks_of_a_lock_that_is_not_there_fails_naming_the_locks_that_are() {
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/ddtrace-4.16-lock-profile.pprof.zst"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_lockprof"))
        .args(["stacks", "--lock", "nosuch", file])
        .output()
        .expect("run lockprof");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(out.stdout.is_empty());
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    assert!(
        stderr.contains(r#"no lock matches "nosuch""#) && stderr.contains("its locks: "),
        "{stderr}"
    );
    // A lock that is there still works.
    let ok = Command::new(env!("CARGO_BIN_EXE_lockprof"))
        .args(["names", file])
        .output()
        .expect("run lockprof");
    let first = String::from_utf8_lossy(&ok.stdout)
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().last().map(str::to_owned))
        .expect("a lock name");
    let out = Command::new(env!("CARGO_BIN_EXE_lockprof"))
        .args(["stacks", "--lock", &first, file])
        .output()
        .expect("run lockprof");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
