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
        LockName {
            file: file_name(self.file),
            line: self.line,
            name: self.name,
        }
        .to_string()
    }
}

/// A `lock name` label, split into its parts: `<file>:<line>` for a lock
/// without a variable name, `<file>:<line>:<name>` for one with a name
/// (`server.rs:42:session_lock`), where an instance of a lock made in a loop
/// is `<name>[<instance>]` (see [`named!`](crate::named)). Lockprof writes
/// these labels, and so do Datadog's profilers.
///
/// ```
/// use lockprof::read::LockName;
///
/// let lock = LockName::parse("server.rs:42:shard_lock[2]").unwrap();
/// assert_eq!((lock.file, lock.line, lock.name), ("server.rs", 42, Some("shard_lock[2]")));
/// assert_eq!((lock.variable(), lock.instance()), (Some("shard_lock"), Some("2")));
/// assert!(lock.matches("shard_lock") && lock.matches("shard_lock[2]"));
/// assert_eq!(lock.to_string(), "server.rs:42:shard_lock[2]");
/// assert!(!LockName::parse("server.rs:42").unwrap().is_named());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LockName<'a> {
    /// The file the lock was created in: its name, without directories.
    pub file: &'a str,
    /// The line the lock was created on.
    pub line: u32,
    /// Everything after `<file>:<line>:`, if the label goes on: the
    /// variable name (it may hold any character, `:` included). An empty
    /// one names nothing (see [`is_named`](Self::is_named)).
    pub name: Option<&'a str>,
}

impl<'a> LockName<'a> {
    /// Splits a label at its first `:<line>` (a `:` and digits, then `:` or
    /// the end), so that a name may hold colons; `None` if it has none (a
    /// label of another kind, or a sample without a lock name).
    pub fn parse(label: &'a str) -> Option<LockName<'a>> {
        label.match_indices(':').find_map(|(at, _)| {
            let rest = &label[at + 1..];
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            let name = match rest.as_bytes().get(digits) {
                None => None,
                Some(b':') => Some(&rest[digits + 1..]),
                Some(_) => return None,
            };
            Some(LockName {
                file: label.get(..at).filter(|f| !f.is_empty())?,
                line: rest[..digits].parse().ok()?,
                name,
            })
        })
    }

    /// Whether the label carries a variable name (`file:line:name`), not
    /// only where the lock was created.
    pub fn is_named(&self) -> bool {
        self.name.is_some_and(|n| !n.is_empty())
    }

    /// The variable name without its instance: `shard_lock` of
    /// `shard_lock[2]`, the whole name of a lock without an instance.
    pub fn variable(&self) -> Option<&'a str> {
        let name = self.name.filter(|n| !n.is_empty())?;
        Some(self.split_instance().map_or(name, |(variable, _)| variable))
    }

    /// The instance of a lock made in a loop: `2` of `shard_lock[2]`.
    pub fn instance(&self) -> Option<&'a str> {
        self.split_instance().map(|(_, instance)| instance)
    }

    fn split_instance(&self) -> Option<(&'a str, &'a str)> {
        self.name?
            .strip_suffix(']')?
            .split_once('[')
            .filter(|(variable, _)| !variable.is_empty())
    }

    /// Whether `wanted` names this lock: its whole name, or, for an
    /// instance, the variable name shared by every instance.
    pub fn matches(&self, wanted: &str) -> bool {
        self.is_named() && (self.name == Some(wanted) || self.variable() == Some(wanted))
    }
}

impl fmt::Display for LockName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)?;
        match self.name {
            Some(name) => write!(f, ":{name}"),
            None => Ok(()),
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
    fn lock_names_parse_back_into_what_made_them() {
        for (label, file, line, name) in [
            ("app.rs:12:queue", "app.rs", 12, Some("queue")),
            ("app.rs:12", "app.rs", 12, None),
            ("app.rs:12:", "app.rs", 12, Some("")),
            (
                "app.rs:12:back\\slash, colon: and = sign",
                "app.rs",
                12,
                Some("back\\slash, colon: and = sign"),
            ),
            ("app.rs:12:3:4", "app.rs", 12, Some("3:4")),
            ("v1:2.rs:7:x", "v1:2.rs", 7, Some("x")),
        ] {
            let parsed = LockName::parse(label).unwrap();
            assert_eq!(
                (parsed.file, parsed.line, parsed.name),
                (file, line, name),
                "{label}"
            );
            assert_eq!(parsed.to_string(), label);
        }
        for not_a_lock_name in ["<no lock name>", "app.rs", ":12:x", "app.rs:99999999999:x"] {
            assert_eq!(LockName::parse(not_a_lock_name), None, "{not_a_lock_name}");
        }
    }

    #[test]
    fn named_labels_have_a_variable_name_after_the_line() {
        let parse = |label| LockName::parse(label).unwrap();
        assert!(parse("app.rs:12:queue").is_named());
        assert!(!parse("app.rs:12").is_named());
        assert!(!parse("app.rs:12:").is_named());
        assert_eq!(parse("app.rs:12:queue").variable(), Some("queue"));
        assert_eq!(parse("app.rs:12").variable(), None);
    }

    #[test]
    fn a_variable_name_matches_every_instance_of_it() {
        let parse = |label| LockName::parse(label).unwrap();
        assert!(parse("a.rs:3:shard_lock[2]").matches("shard_lock"));
        assert!(parse("a.rs:3:shard_lock[2]").matches("shard_lock[2]"));
        assert!(!parse("a.rs:3:shard_lock[2]").matches("shard_lock[1]"));
        assert!(!parse("a.rs:3:shard_locks").matches("shard_lock"));
        assert!(!parse("a.rs:3:queue").matches("que"));
        assert!(!parse("a.rs:3:").matches(""));
        assert_eq!(parse("a.rs:3:[2]").variable(), Some("[2]"));
    }

    #[test]
    fn windows_paths_keep_only_the_file_name() {
        assert_eq!(file_name(r"src\sync\mutex.rs"), "mutex.rs");
        assert_eq!(file_name("mutex.rs"), "mutex.rs");
    }
}
