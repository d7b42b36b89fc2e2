//! Finding the profiles a run wrote, and the locks named in them.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use lockprof::read::LockName;

/// The profiles written under `prefix` (`<prefix>.<pid>.<seq>.pprof`), oldest
/// first.
pub fn written_under(prefix: &Path) -> Vec<PathBuf> {
    let Some(stem) = prefix.file_name().map(|s| s.to_string_lossy().into_owned()) else {
        return Vec::new();
    };
    let dir = match prefix.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let Ok(read) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<(SystemTime, PathBuf)> = read
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with(&format!("{stem}.")) && name.ends_with(".pprof")
        })
        .filter_map(|e| {
            let modified = e.metadata().and_then(|m| m.modified()).ok()?;
            Some((modified, e.path()))
        })
        .collect();
    files.sort();
    files.into_iter().map(|(_, p)| p).collect()
}

/// Whether one of `labels` names a lock `ident` (`…:<ident>`, or an
/// instance of it, `…:<ident>[<instance>]`).
pub fn has_name<'a>(labels: impl IntoIterator<Item = &'a String>, ident: &str) -> bool {
    labels
        .into_iter()
        .any(|label| LockName::parse(label).is_some_and(|name| name.matches(ident)))
}
