//! The few lines an example prints after profiling: the files it wrote and
//! its top locks, read back from those files.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use lockprof::read::LockProfile;

/// One lock's totals over the files.
#[derive(Debug, Default, Clone, Copy)]
pub struct LockTotals {
    pub acquired: i64,
    pub wait_ns: i64,
    pub hold_ns: i64,
}

/// Totals per lock name over every file (unreadable files are reported and
/// skipped).
pub fn totals(files: &[PathBuf]) -> BTreeMap<String, LockTotals> {
    let mut out: BTreeMap<String, LockTotals> = BTreeMap::new();
    for f in files {
        let profile = match LockProfile::from_file(f) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("lockprof: cannot read {}: {e}", f.display());
                continue;
            }
        };
        for s in &profile.samples {
            let Some(name) = &s.lock_name else { continue };
            let t = out.entry(name.clone()).or_default();
            t.acquired += s.acquire;
            t.wait_ns += s.acquire_wait_ns;
            t.hold_ns += s.release_hold_ns;
        }
    }
    out
}

fn ms(ns: i64) -> String {
    format!("{:.3?}", Duration::from_nanos(ns.max(0) as u64))
}

/// Prints (to stderr, or stdout with `to_stdout`) the files written, the
/// `n` locks waited on most (name, acquisitions, total wait, total hold),
/// and the commands to go deeper.
pub fn print(files: &[PathBuf], n: usize, to_stdout: bool) {
    if files.is_empty() {
        return;
    }
    macro_rules! eprintln {
        ($($t:tt)*) => {
            if to_stdout { println!($($t)*) } else { std::eprintln!($($t)*) }
        };
    }
    eprintln!("lockprof: wrote");
    for f in files {
        eprintln!("  {}", f.display());
    }
    let mut rows: Vec<(String, LockTotals)> = totals(files).into_iter().collect();
    rows.sort_by(|a, b| b.1.wait_ns.cmp(&a.1.wait_ns).then(b.1.hold_ns.cmp(&a.1.hold_ns)));
    let width = rows
        .iter()
        .take(n)
        .map(|(name, _)| name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    eprintln!("Top locks by wait:");
    eprintln!(
        "  {:<width$}  {:>10}  {:>12}  {:>12}",
        "LOCK", "ACQUIRED", "WAIT", "HOLD"
    );
    for (name, t) in rows.iter().take(n) {
        eprintln!(
            "  {name:<width$}  {:>10}  {:>12}  {:>12}",
            t.acquired,
            ms(t.wait_ns),
            ms(t.hold_ns)
        );
    }
    let last = files.last().map(|f| f.display().to_string()).unwrap_or_default();
    eprintln!("More: cargo run --features cli --bin lockprof -- stacks {last}");
    eprintln!("  or: go tool pprof -top -sample_index=lock-acquire-wait {last}");
}
