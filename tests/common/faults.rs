//! Output faults shared by the exporter tests: a full disk, and a directory
//! that cannot be written until the test clears the fault.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

use lockprof::{EncodedProfile, Export, ExportError, FileExporter};

/// Writes each profile to `/dev/full`: every write fails with ENOSPC.
pub struct DiskFull;

impl Export for DiskFull {
    fn export(&mut self, profile: &EncodedProfile) -> Result<(), ExportError> {
        let path = PathBuf::from("/dev/full");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|source| ExportError::File {
                path: path.clone(),
                source,
            })?;
        f.write_all(&profile.gzipped_pprof)
            .and_then(|()| f.flush())
            .map_err(|source| ExportError::File { path, source })
    }

    fn describe(&self) -> String {
        "/dev/full".into()
    }
}

/// A disk that is full (profiles go to `/dev/full`) until the switch returned
/// by [`DiskFullUntilCleared::new`] is cleared; then profiles are files.
pub struct DiskFullUntilCleared {
    full: Arc<AtomicBool>,
    files: FileExporter,
}

impl DiskFullUntilCleared {
    /// A full disk, and the switch that frees it (store `false`).
    pub fn new(prefix: impl Into<PathBuf>) -> (Self, Arc<AtomicBool>) {
        let full = Arc::new(AtomicBool::new(true));
        let disk = DiskFullUntilCleared {
            full: Arc::clone(&full),
            files: FileExporter::new(prefix),
        };
        (disk, full)
    }
}

impl Export for DiskFullUntilCleared {
    fn export(&mut self, profile: &EncodedProfile) -> Result<(), ExportError> {
        if self.full.load(Relaxed) {
            DiskFull.export(profile)
        } else {
            self.files.export(profile)
        }
    }

    fn describe(&self) -> String {
        format!("{} (full: {})", self.files.describe(), self.full.load(Relaxed))
    }
}

/// An output directory that cannot be written until [`clear`](Self::clear).
///
/// Read-only (0500) where permission bits bind this process. Root ignores
/// them, so there the directory's path is taken by a regular file instead:
/// nothing can be created under it.
pub struct UnwritableDir {
    dir: PathBuf,
    read_only: bool,
}

impl UnwritableDir {
    /// `<root>/out`, unwritable; `root` must exist.
    pub fn new(root: &Path) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let dir = root.join("out");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o500)).unwrap();
        let probe = dir.join("probe");
        let read_only = std::fs::File::create(&probe).is_err();
        if !read_only {
            std::fs::remove_file(&probe).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
            std::fs::remove_dir(&dir).unwrap();
            std::fs::write(&dir, b"a regular file where the directory should be").unwrap();
        }
        UnwritableDir { dir, read_only }
    }

    /// The prefix to write profiles under.
    pub fn prefix(&self) -> PathBuf {
        self.dir.join("profile")
    }

    /// The directory profiles go to once cleared.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How the directory was made unwritable, for messages.
    pub fn how(&self) -> &'static str {
        if self.read_only {
            "mode 0500"
        } else {
            "a regular file in its place (root ignores mode bits)"
        }
    }

    /// Makes the directory writable (or lets the exporter create it).
    pub fn clear(&self) {
        use std::os::unix::fs::PermissionsExt;
        if self.read_only {
            std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        } else {
            std::fs::remove_file(&self.dir).unwrap();
        }
    }
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
