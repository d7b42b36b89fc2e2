//! Finding the profiles a run wrote, and telling named locks from generic
//! ones in them.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

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

/// A `lock name` label split into its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockName<'a> {
    /// `file.rs:42:session_lock`: carries the variable name.
    Named {
        /// `file.rs:42`.
        site: &'a str,
        /// `session_lock`.
        name: &'a str,
    },
    /// `file.rs:42`: only where the lock was created.
    Generic(&'a str),
}

impl<'a> LockName<'a> {
    /// Classifies a label: named if it has a part after `file:line`.
    pub fn parse(label: &'a str) -> LockName<'a> {
        match label.rsplit_once(':') {
            Some((site, last)) if !last.is_empty() && !last.bytes().all(|b| b.is_ascii_digit()) => {
                LockName::Named { site, name: last }
            }
            _ => LockName::Generic(label),
        }
    }

    /// The variable name, for a named lock.
    pub fn name(&self) -> Option<&'a str> {
        match *self {
            LockName::Named { name, .. } => Some(name),
            LockName::Generic(_) => None,
        }
    }
}

/// Whether one of `labels` names a lock `ident` (`…:<ident>`).
pub fn has_name<'a>(labels: impl IntoIterator<Item = &'a String>, ident: &str) -> bool {
    labels
        .into_iter()
        .any(|label| LockName::parse(label).name() == Some(ident))
}
