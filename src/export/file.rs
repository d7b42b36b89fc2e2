//! Local files: `<prefix>.<pid>.<seq>.pprof`, gzip'd pprof.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{EncodedProfile, Export, ExportError};

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
    /// Writes under `prefix`; its directory is created if missing.
    pub fn new(prefix: impl Into<PathBuf>) -> Self {
        FileExporter {
            prefix: prefix.into(),
            last: None,
        }
    }

    /// The prefix used when none is configured:
    /// `<temp dir>/lockprof/<executable name>`.
    pub fn default_prefix() -> PathBuf {
        let exe = std::env::current_exe()
            .ok()
            .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "profile".to_owned());
        std::env::temp_dir().join("lockprof").join(exe)
    }

    /// The prefix files are written under.
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// The path of the profile with sequence number `seq` of this process.
    pub fn path_for(&self, seq: u64) -> PathBuf {
        let mut name = self.prefix.as_os_str().to_owned();
        name.push(format!(".{}.{}.pprof", std::process::id(), seq));
        PathBuf::from(name)
    }

    /// The last file written, if any.
    pub fn last_written(&self) -> Option<&Path> {
        self.last.as_deref()
    }
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
        format!("files {}.<pid>.<seq>.pprof", self.prefix.display())
    }
}
