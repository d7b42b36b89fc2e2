//! Where a lock was created, and the name it goes by in profiles.

use std::fmt;
use std::panic::Location;

/// The creation site of a lock: file and line from `#[track_caller]`, plus an
/// optional variable name (given by hand or by [`named!`](crate::named)).
///
/// Carried inline by every lock; reading it costs nothing on the locking path.
/// The profile label is `<file name>:<line>:<name>`, or `<file name>:<line>`
/// when the lock has no name.
#[derive(Clone, Copy)]
pub struct LockSite {
    location: &'static Location<'static>,
    name: Option<&'static str>,
}

impl LockSite {
    /// The site of the caller (used by the `#[track_caller]` constructors).
    #[track_caller]
    #[inline]
    pub(crate) const fn caller() -> Self {
        LockSite {
            location: Location::caller(),
            name: None,
        }
    }

    pub(crate) const fn with_name(mut self, name: &'static str) -> Self {
        self.name = Some(name);
        self
    }

    /// The source file the lock was created in, as the compiler reports it.
    pub fn file(&self) -> &'static str {
        self.location.file()
    }

    /// The line the lock was created on.
    pub fn line(&self) -> u32 {
        self.location.line()
    }

    /// The variable name of the lock, if it has one.
    pub fn name(&self) -> Option<&'static str> {
        self.name
    }

    /// The label written to profiles: `<file name>:<line>:<name>` or
    /// `<file name>:<line>`.
    pub fn label(&self) -> String {
        self.key().label()
    }

    /// The site's identity by address, for caches: two sites with the same
    /// identity have the same key (the converse need not hold).
    #[inline]
    pub(crate) fn identity(&self) -> (usize, usize, usize) {
        let (name, len) = self
            .name
            .map_or((0, usize::MAX), |n| (n.as_ptr() as usize, n.len()));
        (self.location as *const Location<'static> as usize, name, len)
    }

    pub(crate) fn key(&self) -> SiteKey {
        SiteKey {
            file: self.location.file(),
            line: self.location.line(),
            column: self.location.column(),
            name: self.name,
        }
    }
}

impl fmt::Debug for LockSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

impl fmt::Display for LockSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

/// A site by value, for hashing in the recorder: two locks created at the same
/// place with the same name are one lock name in the profile.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct SiteKey {
    pub(crate) file: &'static str,
    pub(crate) line: u32,
    pub(crate) column: u32,
    pub(crate) name: Option<&'static str>,
}

impl std::hash::Hash for SiteKey {
    /// Every field, text included: locks named at run time at one line
    /// (`req-0000001`, `req-0000002`, …) differ only in their text, and a
    /// hash of lengths alone put them all in one bucket (a flush of 16,000
    /// such names took 8 s). Hashed on the profiler thread only (recording
    /// an event, reading the totals, building the profile), never on the
    /// locking path.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(((self.line as u64) << 32) | self.column as u64);
        self.file.hash(state);
        self.name.hash(state);
    }
}

impl SiteKey {
    pub(crate) fn label(&self) -> String {
        let file = file_name(self.file);
        match self.name {
            Some(name) => format!("{file}:{}:{name}", self.line),
            None => format!("{file}:{}", self.line),
        }
    }
}

/// The last path component, for both `/` and `\` separators.
fn file_name(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_is_file_name_line_and_name() {
        let key = SiteKey {
            file: "examples/server/src/server.rs",
            line: 42,
            column: 9,
            name: Some("session_lock"),
        };
        assert_eq!(key.label(), "server.rs:42:session_lock");
        let unnamed = SiteKey { name: None, ..key };
        assert_eq!(unnamed.label(), "server.rs:42");
    }

    #[test]
    fn names_of_one_length_at_one_line_hash_apart() {
        use crate::util::fxhash::FxHasher;
        use std::hash::{Hash, Hasher};
        let names: Vec<&'static str> = (0..16_000)
            .map(|i| &*Box::leak(format!("req-{i:07}").into_boxed_str()))
            .collect();
        let hashes: std::collections::HashSet<u64> = names
            .iter()
            .map(|&name| {
                let key = SiteKey {
                    file: "src/server.rs",
                    line: 7,
                    column: 20,
                    name: Some(name),
                };
                let mut h = FxHasher::default();
                key.hash(&mut h);
                h.finish()
            })
            .collect();
        assert_eq!(hashes.len(), names.len());
    }

    #[test]
    fn windows_paths_keep_only_the_file_name() {
        assert_eq!(file_name(r"src\sync\mutex.rs"), "mutex.rs");
        assert_eq!(file_name("mutex.rs"), "mutex.rs");
    }
}
