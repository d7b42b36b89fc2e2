//! From command-line inputs (files, directories, prefixes, `http://` URLs)
//! to one merged profile, or a one-line error naming the file or URL.

use std::path::{Path, PathBuf};

use lockprof::read::{profile_files, run_name, LockProfile, Pick, ReadError};

use crate::report::{self, Accuracies};
use crate::{fetch, Failure};

/// The profile read, merged from `files`.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) profile: LockProfile,
    /// The files read (or URLs fetched).
    pub(crate) files: Vec<PathBuf>,
    /// What each file says of its locks' totals, combined: kept apart from
    /// the merged profile, whose comments no longer say which file a lock's
    /// samples came from.
    pub(crate) accuracy: Accuracies,
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
    merge(files(inputs, all)?)
}

/// As [`load`], but one merged profile per run (see
/// [`run_name`](lockprof::read::run_name)), in the order the runs' first files
/// come.
pub(crate) fn load_runs(inputs: &[PathBuf], all: bool) -> Result<Vec<(String, Loaded)>, Failure> {
    let mut runs: Vec<(String, Vec<PathBuf>)> = Vec::new();
    for file in files(inputs, all)? {
        let run = match file.to_str() {
            Some(url) if fetch::is_url(&file) => fetch::run_name(url),
            _ => run_name(&file),
        };
        match runs.iter_mut().find(|(r, _)| *r == run) {
            Some((_, files)) => files.push(file),
            None => runs.push((run, vec![file])),
        }
    }
    runs.into_iter()
        .map(|(run, files)| Ok((run, merge(files)?)))
        .collect()
}

/// The profile files (and URLs) the inputs stand for.
fn files(inputs: &[PathBuf], all: bool) -> Result<Vec<PathBuf>, Failure> {
    let pick = if all { Pick::All } else { Pick::Newest };
    let mut files = Vec::new();
    for input in inputs {
        if fetch::is_url(input) {
            files.push(input.clone());
            continue;
        }
        files.extend(profile_files(input, pick).map_err(|e| failure(input, e))?);
    }
    Ok(files)
}

/// Reads one profile file, or fetches one URL.
fn read(file: &Path) -> Result<LockProfile, Failure> {
    match file.to_str() {
        Some(url) if fetch::is_url(file) => {
            let bytes = fetch::fetch(url).map_err(|e| Failure::input(Some(file), e))?;
            LockProfile::from_bytes(&bytes).map_err(|e| failure(file, e))
        }
        _ => LockProfile::from_file(file).map_err(|e| failure(file, e)),
    }
}

/// Reads `files` and merges them into one profile.
fn merge(files: Vec<PathBuf>) -> Result<Loaded, Failure> {
    let mut merged: Option<LockProfile> = None;
    let mut accuracy = Accuracies::new();
    for file in &files {
        let profile = read(file)?;
        report::merge_accuracy(&mut accuracy, report::accuracy(&profile));
        match &mut merged {
            Some(m) => m.merge(profile),
            None => merged = Some(profile),
        }
    }
    match merged {
        Some(profile) => Ok(Loaded {
            profile,
            files,
            accuracy,
        }),
        None => Err(Failure::input(None, "no profile given")),
    }
}
