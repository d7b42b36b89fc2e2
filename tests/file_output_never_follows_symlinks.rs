//! The file writer replaces a symlink at its target (or at its temporary
//! file) instead of writing through it, and creates files with mode 0644.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::time::SystemTime;

use lockprof::{EncodedProfile, Export, FileExporter, ProfileStats};

fn profile(seq: u64) -> EncodedProfile {
    EncodedProfile {
        gzipped_pprof: b"not really gzip, the writer does not care".to_vec(),
        start: SystemTime::now(),
        end: SystemTime::now(),
        seq,
        stats: ProfileStats::default(),
        endpoint_counts: Vec::new(),
    }
}

#[test]
fn symlinks_at_the_target_and_the_temporary_file_are_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let mut files = FileExporter::new(dir.path().join("out"));

    let target = files.path_for(0);
    symlink(&victim, &target).unwrap();
    let mut tmp = target.as_os_str().to_owned();
    tmp.push(".tmp");
    symlink(&victim, &tmp).unwrap();

    files.export(&profile(0)).unwrap();
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    let meta = std::fs::symlink_metadata(&target).unwrap();
    assert!(meta.file_type().is_file(), "the symlink was replaced by a file");
    assert_eq!(std::fs::read(&target).unwrap(), profile(0).gzipped_pprof);
    assert!(std::fs::symlink_metadata(&tmp).is_err(), "no temporary file left");

    // A dangling symlink is replaced too, and never creates its target.
    let nowhere = dir.path().join("nowhere");
    let target = files.path_for(1);
    symlink(&nowhere, &target).unwrap();
    files.export(&profile(1)).unwrap();
    assert!(!nowhere.exists());
    assert!(std::fs::symlink_metadata(&target).unwrap().file_type().is_file());
}

#[test]
fn profiles_are_created_with_mode_0644() {
    let dir = tempfile::tempdir().unwrap();
    // The mode is 0644 less the umask; the usual umask leaves it whole.
    // SAFETY: umask has no preconditions; this binary's other test creates
    // files the same way.
    let old = unsafe { libc::umask(0o022) };
    let mut files = FileExporter::new(dir.path().join("mode"));
    files.export(&profile(7)).unwrap();
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    let mode = std::fs::metadata(files.path_for(7)).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o644, "mode {mode:o}");
}
