//! Local files: `<prefix>.<pid>.<seq>.pprof`, gzip'd pprof.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{EncodedProfile, Export, ExportError};
use crate::pprof::files;

/// Writes each profile to `<prefix>.<pid>.<seq>.pprof`.
///
/// Files are created with mode 0644 (profiles hold code locations and lock
/// names, no secrets, and are meant to be read by other tools and users);
/// each is written to a fresh temporary file in the same directory and then
/// renamed into place, so an existing symlink at the target is replaced, never
/// followed.
#[derive(Debug, Clone)]
pub struct FileExporter {
    prefix: PathBuf,
    last: Option<PathBuf>,
}

impl FileExporter {
    /// Writes under `prefix`; its directory is created if missing. A prefix
    /// that ends in a path separator or names an existing directory is that
    /// directory: files go to `<dir>/<executable>.<pid>.<seq>.pprof`, not to
    /// hidden `.<pid>.<seq>.pprof` files or beside the directory.
    pub fn new(prefix: impl Into<PathBuf>) -> Self {
        let prefix = prefix.into();
        let prefix = if names_a_directory(&prefix) {
            prefix.join(executable_name())
        } else {
            prefix
        };
        FileExporter { prefix, last: None }
    }

    /// The prefix used when none is configured:
    /// `<temp dir>/lockprof/<executable name>`.
    pub fn default_prefix() -> PathBuf {
        std::env::temp_dir().join("lockprof").join(executable_name())
    }

    /// The prefix files are written under.
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// The path of the profile with sequence number `seq` of this process.
    pub fn path_for(&self, seq: u64) -> PathBuf {
        files::path_for(&self.prefix, std::process::id(), seq)
    }

    /// The last file written, if any.
    pub fn last_written(&self) -> Option<&Path> {
        self.last.as_deref()
    }
}

/// The running executable's file stem, or `profile`.
fn executable_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "profile".to_owned())
}

fn names_a_directory(prefix: &Path) -> bool {
    let text = prefix.as_os_str().to_string_lossy();
    text.ends_with('/') || text.ends_with(std::path::MAIN_SEPARATOR) || prefix.is_dir()
}

impl Export for FileExporter {
    fn export(&mut self, profile: &EncodedProfile) -> Result<(), ExportError> {
        let path = self.path_for(profile.seq);
        let err = |source| ExportError::File {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(err)?;
        }
        let mut tmp_name = path.as_os_str().to_owned();
        tmp_name.push(".tmp");
        let tmp = PathBuf::from(tmp_name);
        let _ = fs::remove_file(&tmp);
        let write = || -> std::io::Result<()> {
            let mut options = OpenOptions::new();
            // `create_new` is O_EXCL: it never follows a symlink.
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o644);
            let mut f = options.open(&tmp)?;
            f.write_all(&profile.gzipped_pprof)?;
            f.sync_data()?;
            fs::rename(&tmp, &path)
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(err(e));
        }
        self.last = Some(path);
        Ok(())
    }

    fn describe(&self) -> String {
        format!("files {}", files::pattern(&self.prefix))
    }

    fn last_file(&self) -> Option<&Path> {
        self.last.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expected_name(seq: u64) -> String {
        format!("{}.{}.{seq}.pprof", executable_name(), std::process::id())
    }

    #[test]
    fn a_prefix_naming_an_existing_directory_writes_inside_it() {
        let dir = tempfile::tempdir().unwrap();
        let files = FileExporter::new(dir.path());
        assert_eq!(files.path_for(3), dir.path().join(expected_name(3)));
    }

    #[test]
    fn a_prefix_ending_in_a_separator_is_a_directory_even_before_it_exists() {
        let dir = tempfile::tempdir().unwrap();
        let mut prefix = dir.path().join("profiles").into_os_string();
        prefix.push(std::path::MAIN_SEPARATOR_STR);
        let files = FileExporter::new(prefix);
        assert_eq!(
            files.path_for(0),
            dir.path().join("profiles").join(expected_name(0))
        );
    }

    #[test]
    fn any_other_prefix_is_kept_as_given() {
        let dir = tempfile::tempdir().unwrap();
        let files = FileExporter::new(dir.path().join("app"));
        assert_eq!(
            files.path_for(1),
            dir.path().join(format!("app.{}.1.pprof", std::process::id()))
        );
    }
}
