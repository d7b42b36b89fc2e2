//! From command-line paths (files, directories, prefixes) to one merged
//! profile, or a one-line error naming the file.

use std::path::{Path, PathBuf};

use lockprof::read::{profile_files, LockProfile, Pick, ReadError};

use crate::Failure;

/// The profile read, merged from `files`.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) profile: LockProfile,
    pub(crate) files: Vec<PathBuf>,
}

impl Loaded {
    /// The file read, or how many.
    pub(crate) fn describe(&self) -> String {
        match self.files.as_slice() {
            [one] => one.display().to_string(),
            many => format!("{} profiles", many.len()),
        }
    }
}

fn failure(path: &Path, e: ReadError) -> Failure {
    match e {
        // Its message names the path already.
        ReadError::Io { source, path } => Failure::input(Some(&path), source),
        e => Failure::input(Some(path), e),
    }
}

/// Reads every input (a directory or prefix gives its newest profile, or all
/// of them with `all`) and merges them.
pub(crate) fn load(inputs: &[PathBuf], all: bool) -> Result<Loaded, Failure> {
    let pick = if all { Pick::All } else { Pick::Newest };
    let mut files = Vec::new();
    for input in inputs {
        files.extend(profile_files(input, pick).map_err(|e| failure(input, e))?);
    }
    let mut merged: Option<LockProfile> = None;
    for file in &files {
        let profile = LockProfile::from_file(file).map_err(|e| failure(file, e))?;
        match &mut merged {
            Some(m) => m.merge(profile),
            None => merged = Some(profile),
        }
    }
    match merged {
        Some(profile) => Ok(Loaded { profile, files }),
        None => Err(Failure::input(None, "no profile given")),
    }
}
