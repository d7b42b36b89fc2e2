//! `lockprof`: inspect lock profiles written by lockprof or by Datadog's
//! Python lock profiler. Built with the `cli` feature.

#![warn(missing_debug_implementations, unreachable_pub)]

mod args;
mod fetch;
mod input;
mod render;
mod report;

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};
use report::By;

/// A failure that ends the command: a message naming the file and the
/// problem, and the exit code.
#[derive(Debug)]
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    /// Bad input or a failed write: exit code 2.
    fn input(path: Option<&std::path::Path>, problem: impl std::fmt::Display) -> Failure {
        let message = match path {
            Some(p) => format!("{}: {problem}", p.display()),
            None => problem.to_string(),
        };
        Failure { code: 2, message }
    }

    /// A check that did not pass (`names --expect`, `diff --fail-over`): 1.
    fn check(message: String) -> Failure {
        Failure { code: 1, message }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            // One line, whatever the message held.
            let line = f.message.replace(['\n', '\r'], " ");
            let _ = writeln!(std::io::stderr(), "lockprof: {line}");
            ExitCode::from(f.code)
        }
    }
}

/// Writes to stdout; a closed pipe (`lockprof top … | head`) is not an error.
fn emit(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Failure::input(None, format!("stdout: {e}")))
        }
        _ => Ok(()),
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Top(a) => top(a),
        Command::Stacks(a) => stacks(a),
        Command::Names(a) => names(a),
        Command::Flamegraph(a) => flamegraph(a),
        Command::Blame(a) => blame(a),
        Command::Diff(a) => diff(a),
    }
}

fn top(a: args::TopArgs) -> Result<(), Failure> {
    // Profiles of several runs: a row per run and lock, unless merged.
    let runs = if a.merge {
        vec![(String::new(), input::load(&a.inputs.files, a.inputs.all)?)]
    } else {
        input::load_runs(&a.inputs.files, a.inputs.all)?
    };
    let described = match runs.as_slice() {
        [(_, one)] => one.describe(),
        many => format!("{} runs", many.len()),
    };
    let mut ranked: Vec<(String, Vec<report::LockRow>)> = runs
        .iter()
        .map(|(run, loaded)| {
            let mut rows = report::top(&loaded.profile, a.by);
            report::with_accuracy(&mut rows, &loaded.accuracy);
            (run.clone(), rows)
        })
        .collect();
    let mut rows = match ranked.len() {
        1 => ranked.pop().map(|(_, rows)| rows).unwrap_or_default(),
        _ => report::top_of_runs(ranked, a.by),
    };
    if let Some(n) = a.limit {
        rows.truncate(n);
    }
    if a.json {
        emit(&render::top_json(&rows))
    } else if a.csv {
        emit(&render::top_csv(&rows))
    } else if rows.is_empty() {
        emit(&format!("no lock samples in {described}\n"))
    } else {
        emit(&render::top_table(&rows))
    }
}

fn stacks(a: args::StacksArgs) -> Result<(), Failure> {
    let loaded = input::load(&a.inputs.files, a.inputs.all)?;
    if let Some(wanted) = &a.lock {
        missing_lock(&loaded, wanted)?;
    }
    let locks = report::stacks(&loaded.profile, a.by, a.lock.as_deref(), a.full);
    if locks.is_empty() {
        let what = match &a.lock {
            Some(l) => format!("lock {l:?} has no {} in {}", by_word(a.by), loaded.describe()),
            None => format!("no lock has {} in {}", by_word(a.by), loaded.describe()),
        };
        return emit(&format!("{what}\n"));
    }
    let mut text = render::stacks_text(&locks, by_word(a.by), a.limit, a.depth);
    // Say so when whole locks are left out, not only stacks.
    let without = report::locks_without(&loaded.profile, a.by, a.lock.as_deref());
    if without > 0 {
        let locks = if without == 1 { "lock" } else { "locks" };
        text.push_str(&format!(
            "\n({without} more {locks} with no {}: `lockprof top` lists every lock)\n",
            by_word(a.by)
        ));
    }
    emit(&text)
}

/// A lock the user named that is not in the profile is an error: say which
/// locks are.
fn missing_lock(loaded: &input::Loaded, wanted: &str) -> Result<(), Failure> {
    let names: std::collections::BTreeSet<String> = loaded.profile.lock_names();
    {
        if !names.iter().any(|n| report::matches_lock(n, wanted)) {
            const SHOWN: usize = 10;
            let mut list: Vec<&str> = names.iter().map(String::as_str).take(SHOWN).collect();
            let more = names.len().saturating_sub(SHOWN);
            let more = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            if list.is_empty() {
                list.push("none");
            }
            return Err(Failure::input(
                None,
                format!(
                    "no lock matches {wanted:?} in {}; its locks: {}{more}",
                    loaded.describe(),
                    list.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

fn names(a: args::NamesArgs) -> Result<(), Failure> {
    let loaded = input::load(&a.inputs.files, a.inputs.all)?;
    let mut names: Vec<(String, bool)> = report::top(&loaded.profile, By::Count)
        .into_iter()
        .map(|r| {
            let named = r.named();
            (r.name, named)
        })
        .collect();
    names.sort();
    emit(&if a.json {
        render::names_json(&names)
    } else {
        render::names_text(&names)
    })?;
    let missing: Vec<&str> = a
        .expect
        .iter()
        .map(|e| e.trim())
        .filter(|e| !e.is_empty() && !names.iter().any(|(n, _)| report::matches_lock(n, e)))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Failure::check(format!(
            "expected lock names missing: {}",
            missing.join(", ")
        )))
    }
}

fn flamegraph(a: args::FlamegraphArgs) -> Result<(), Failure> {
    let loaded = input::load(&a.inputs.files, a.inputs.all)?;
    let by = match a.by {
        args::TimeBy::Wait => By::Wait,
        args::TimeBy::Hold => By::Hold,
        args::TimeBy::Caused => By::Caused,
    };
    let lines = report::folded(&loaded.profile, by, a.full);
    if lines.is_empty() {
        return Err(Failure::input(
            None,
            format!(
                "nothing to draw: no lock has {} in {}",
                by_word(by),
                loaded.describe()
            ),
        ));
    }
    let title = a
        .title
        .unwrap_or_else(|| format!("Lock {} time ({})", by_word(by), loaded.describe()));
    write_flamegraph(&lines, &title, &a.output)
}

fn blame(a: args::BlameArgs) -> Result<(), Failure> {
    let loaded = input::load(&a.inputs.files, a.inputs.all)?;
    if let Some(wanted) = &a.lock {
        missing_lock(&loaded, wanted)?;
    }
    let locks = report::blame(&loaded.profile, a.lock.as_deref(), a.full);
    if a.json {
        return emit(&render::blame_json(&locks));
    }
    if locks.is_empty() {
        let whose = a
            .lock
            .as_ref()
            .map_or_else(|| "no lock".to_owned(), |l| format!("lock {l:?}"));
        return emit(&format!(
            "{whose} has caused wait in {} (it needs waits that parked while a sampled waiter was queued, \
             in a profile written by lockprof: Datadog uploads leave it out unless asked)\n",
            loaded.describe()
        ));
    }
    emit(&render::blame_text(&locks, a.limit, a.waiters, a.depth))
}

fn diff(a: args::DiffArgs) -> Result<(), Failure> {
    let before = input::load(std::slice::from_ref(&a.before), a.all)?;
    let after = input::load(std::slice::from_ref(&a.after), a.all)?;
    let rows = report::diff(&before.profile, &after.profile);
    emit(&if a.json {
        render::diff_json(&rows)
    } else {
        render::diff_table(&rows)
    })?;
    let Some(limit) = a.fail_over else { return Ok(()) };
    let over: Vec<String> = rows
        .iter()
        .filter(|r| r.wait_after >= a.min_wait && r.wait_grew_over(limit))
        .map(|r| match r.wait_pct() {
            Some(p) => format!("{} {p:+.1}%", r.name),
            None => format!("{} (new wait)", r.name),
        })
        .collect();
    if over.is_empty() {
        Ok(())
    } else {
        Err(Failure::check(format!(
            "lock wait grew more than {limit}%: {}",
            over.join(", ")
        )))
    }
}

fn by_word(by: By) -> &'static str {
    match by {
        By::Wait => "wait",
        By::Hold => "hold",
        By::Count => "acquisitions",
        By::Caused => "caused wait",
    }
}

fn write_flamegraph(lines: &[String], title: &str, output: &Path) -> Result<(), Failure> {
    use inferno::flamegraph::{self, Direction, Options};
    let mut options = Options::default();
    options.title = title.to_owned();
    options.subtitle =
        Some("lock names on top; under each, the frame that locked it, then its callers".to_owned());
    options.count_name = "ns".to_owned();
    options.name_type = "Frame:".to_owned();
    options.direction = Direction::Inverted;
    options.hash = true;
    let mut svg = Vec::new();
    flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), &mut svg)
        .map_err(|e| Failure::input(None, format!("cannot draw the flame graph: {e}")))?;
    if output.as_os_str() == "-" {
        return emit(&String::from_utf8_lossy(&svg));
    }
    std::fs::write(output, &svg).map_err(|e| Failure::input(Some(output), e))
}
