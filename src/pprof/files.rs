//! The names of profile files, `<prefix>.<pid>.<seq>.pprof`: the one place
//! that knows them. The file exporter names its files here, and readers find
//! them here (public through `lockprof::read`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::read::ReadError;

/// The extension of the files lockprof writes.
const EXTENSION: &str = "pprof";

/// The name of a profile file as lockprof and Datadog's profilers write
/// them: `<prefix>.<pid>.<seq>`, then an extension or none (lockprof writes
/// `.pprof`).
///
/// ```
/// use lockprof::read::ProfileFileName;
///
/// let name = ProfileFileName::parse("app.2.1234.0.pprof.zst").unwrap();
/// assert_eq!((name.prefix, name.pid, name.seq, name.extension), ("app.2", 1234, 0, "pprof.zst"));
/// assert_eq!(name.run(), "app.2.1234");
/// assert_eq!(name.to_string(), "app.2.1234.0.pprof.zst");
/// assert_eq!(ProfileFileName::parse("before.pprof"), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProfileFileName<'a> {
    /// The file name before the pid: the last part of the prefix given to
    /// `output_pprof` or `DD_PROFILING_OUTPUT_PPROF`.
    pub prefix: &'a str,
    /// The process that wrote the file.
    pub pid: u32,
    /// The profile's sequence number in its process, from 0.
    pub seq: u64,
    /// What follows the sequence number, without the dot: `pprof`,
    /// `pprof.zst`, or empty.
    pub extension: &'a str,
}

impl<'a> ProfileFileName<'a> {
    /// Parses a file name (not a path): from the end, the extension (the
    /// parts that are not all digits), the sequence number, the pid, and a
    /// prefix that is not empty. `None` for any other name.
    pub fn parse(file_name: &'a str) -> Option<ProfileFileName<'a>> {
        let numeric = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        let mut parts = file_name.rsplit('.');
        let mut extension_len = 0;
        let seq = loop {
            let part = parts.next()?;
            if numeric(part) {
                break part;
            }
            extension_len += part.len() + 1;
        };
        let pid = parts.next().filter(|p| numeric(p))?;
        let prefix_len = file_name
            .len()
            .checked_sub(extension_len + seq.len() + pid.len() + 2)?;
        let prefix = file_name.get(..prefix_len).filter(|p| !p.is_empty())?;
        Some(ProfileFileName {
            prefix,
            pid: pid.parse().ok()?,
            seq: seq.parse().ok()?,
            extension: file_name
                .get(file_name.len() - extension_len..)
                .map(|e| e.strip_prefix('.').unwrap_or(e))?,
        })
    }

    /// The run the file belongs to, `<prefix>.<pid>`: one process.
    pub fn run(&self) -> String {
        format!("{}.{}", self.prefix, self.pid)
    }
}

impl fmt::Display for ProfileFileName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.prefix, self.pid, self.seq)?;
        if !self.extension.is_empty() {
            write!(f, ".{}", self.extension)?;
        }
        Ok(())
    }
}

/// The file lockprof writes under `prefix` for profile `seq` of process
/// `pid`.
pub(crate) fn path_for(prefix: &Path, pid: u32, seq: u64) -> PathBuf {
    let mut name = prefix.as_os_str().to_owned();
    name.push(format!(".{pid}.{seq}.{EXTENSION}"));
    PathBuf::from(name)
}

/// The files written under `prefix`, in words.
pub(crate) fn pattern(prefix: &Path) -> String {
    format!("{}.<pid>.<seq>.{EXTENSION}", prefix.display())
}

/// Which of the profiles in a directory or under a prefix to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// The most recently modified one.
    Newest,
    /// All of them, oldest first.
    All,
}

/// The profile files that `input` stands for:
/// - a file: itself (whatever its name);
/// - a directory: the profile files in it (`*.pprof`, `*.pb`, `*.pb.gz`, …,
///   or a [`ProfileFileName`] without an extension), not recursing;
/// - otherwise a prefix as given to `DD_PROFILING_OUTPUT_PPROF`: the files
///   whose [`ProfileFileName::prefix`] it is, with or without an extension.
///
/// Of a directory or prefix, `pick` chooses the newest file or all of them,
/// oldest first (files of one process modified within the file system's
/// clock resolution in the order of their sequence numbers). Files being
/// written (`*.tmp`) are left out.
pub fn profile_files(input: &Path, pick: Pick) -> Result<Vec<PathBuf>, ReadError> {
    if input.is_file() {
        return Ok(vec![input.to_owned()]);
    }
    let is_dir = input.is_dir();
    // `None`: every profile file of a directory; `Some(stem)`: a prefix's.
    let (dir, stem) = if is_dir {
        (input.to_owned(), None)
    } else {
        let Some(stem) = input.file_name().and_then(|n| n.to_str()) else {
            return Err(ReadError::NotFound);
        };
        let dir = match input.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        (dir, Some(stem))
    };
    let matches = |name: &str| {
        !name.ends_with(".tmp")
            && match stem {
                None => is_profile_name(name),
                Some(stem) => ProfileFileName::parse(name).is_some_and(|n| n.prefix == stem),
            }
    };
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(_) if !is_dir => return Err(ReadError::NotFound),
        Err(source) => return Err(ReadError::Io { path: dir, source }),
    };
    type Order = (SystemTime, Option<(u32, u64)>, PathBuf);
    let mut found: Vec<Order> = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !matches(name) {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
        let seq = ProfileFileName::parse(name).map(|n| (n.pid, n.seq));
        found.push((modified, seq, entry.path()));
    }
    if found.is_empty() {
        return Err(if is_dir {
            ReadError::NoProfiles(
                "directory holds no profile file (*.pprof, *.pb, *.pb.gz, *.pprof.zst, or <prefix>.<pid>.<seq>)"
                    .to_owned(),
            )
        } else {
            ReadError::NotFound
        });
    }
    found.sort();
    Ok(match pick {
        Pick::All => found.into_iter().map(|(_, _, p)| p).collect(),
        Pick::Newest => found.pop().map(|(_, _, p)| p).into_iter().collect(),
    })
}

/// The run a profile file belongs to: of a [`ProfileFileName`], its
/// [`run`](ProfileFileName::run) (`app.1234`: one process); of any other
/// file, its name without the extension (`before` of `before.pprof`).
pub fn run_name(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Some(profile) = ProfileFileName::parse(&name) {
        return profile.run();
    }
    match name.find('.') {
        Some(0) | None => name,
        Some(i) => name[..i].to_owned(),
    }
}

/// A profile file in a directory: a known extension, or a
/// [`ProfileFileName`] without one, as Datadog's profilers write them.
fn is_profile_name(name: &str) -> bool {
    if name.starts_with('.') {
        return false;
    }
    const EXTENSIONS: [&str; 9] = [
        ".pprof",
        ".pprof.gz",
        ".pprof.zst",
        ".pb",
        ".pb.gz",
        ".pb.zst",
        ".prof",
        ".prof.gz",
        ".prof.zst",
    ];
    EXTENSIONS.iter().any(|e| name.ends_with(e))
        || ProfileFileName::parse(name).is_some_and(|n| n.extension.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_parse_back_into_what_made_them() {
        let written = path_for(Path::new("/tmp/dir/app.v2"), 41, 12);
        assert_eq!(written, Path::new("/tmp/dir/app.v2.41.12.pprof"));
        let name = written.file_name().unwrap().to_str().unwrap();
        assert_eq!(
            ProfileFileName::parse(name),
            Some(ProfileFileName {
                prefix: "app.v2",
                pid: 41,
                seq: 12,
                extension: "pprof"
            })
        );
        assert_eq!(ProfileFileName::parse(name).unwrap().to_string(), name);
        let datadog = ProfileFileName::parse("python.1234.7").unwrap();
        assert_eq!((datadog.prefix, datadog.extension), ("python", ""));
        for not_one in [
            "before.pprof",
            "1234.0.pprof",
            ".1.2.pprof",
            "app.x.2.pprof",
            "app.1.2.3.4",
        ] {
            assert_eq!(
                ProfileFileName::parse(not_one).map(|n| n.prefix),
                if not_one == "app.1.2.3.4" {
                    Some("app.1.2")
                } else {
                    None
                },
                "{not_one}"
            );
        }
    }

    #[test]
    fn profiles_of_one_process_written_within_a_clock_tick_come_in_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let same_time = std::time::SystemTime::now();
        for seq in [10, 2, 1] {
            let path = dir.path().join(format!("app.7.{seq}.pprof"));
            std::fs::write(&path, b"x").unwrap();
            std::fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(same_time)
                .unwrap();
        }
        let names: Vec<String> = profile_files(dir.path(), Pick::All)
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["app.7.1.pprof", "app.7.2.pprof", "app.7.10.pprof"]);
    }

    fn touch(path: &Path, age_s: u64) {
        std::fs::write(path, b"x").unwrap();
        let when = std::time::SystemTime::now() - std::time::Duration::from_secs(age_s);
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(when)
            .unwrap();
    }

    #[test]
    fn directories_and_prefixes_find_their_profiles_newest_last() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        touch(&d.join("app.10.0.pprof"), 30);
        touch(&d.join("app.10.1.pprof"), 20);
        touch(&d.join("app.11.0"), 10); // Datadog's naming without extension.
        touch(&d.join("other.1.0.pprof"), 5);
        touch(&d.join("app.10.2.pprof.tmp"), 1);
        touch(&d.join("notes.txt"), 1);
        let names = |files: Vec<PathBuf>| -> Vec<String> {
            files
                .iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(
            names(profile_files(d, Pick::Newest).unwrap()),
            ["other.1.0.pprof"]
        );
        assert_eq!(
            names(profile_files(d, Pick::All).unwrap()),
            ["app.10.0.pprof", "app.10.1.pprof", "app.11.0", "other.1.0.pprof"]
        );
        assert_eq!(
            names(profile_files(&d.join("app"), Pick::Newest).unwrap()),
            ["app.11.0"]
        );
        assert_eq!(
            names(profile_files(&d.join("app"), Pick::All).unwrap()),
            ["app.10.0.pprof", "app.10.1.pprof", "app.11.0"]
        );
        assert_eq!(
            names(profile_files(&d.join("notes.txt"), Pick::Newest).unwrap()),
            ["notes.txt"]
        );
        assert!(matches!(
            profile_files(&d.join("ap"), Pick::Newest),
            Err(ReadError::NotFound)
        ));
        assert!(matches!(
            profile_files(&d.join("missing-dir/app"), Pick::Newest),
            Err(ReadError::NotFound)
        ));
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            profile_files(empty.path(), Pick::All),
            Err(ReadError::NoProfiles(_))
        ));
    }

    #[test]
    fn run_names_are_the_file_name_up_to_the_pid() {
        let run = |name: &str| run_name(Path::new("/x").join(name).as_path());
        assert_eq!(
            run("lock_profiler_stress.23576.0.pprof"),
            "lock_profiler_stress.23576"
        );
        assert_eq!(run("deadlock-prone.41.12.pprof"), "deadlock-prone.41");
        assert_eq!(run("app.2.1234.0.pprof.zst"), "app.2.1234");
        assert_eq!(run("python.1234.7"), "python.1234");
        assert_eq!(run("before.pprof"), "before");
        assert_eq!(run("1234.0.pprof"), "1234");
    }
}
