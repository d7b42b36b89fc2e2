//! Report rows as text: human tables, CSV and JSON.

use std::fmt::Write as _;

use serde_json::{json, Value};

use lockprof::read::{Figure, Frame};

use crate::report::{DiffRow, LockBlame, LockRow, LockStacks};

/// A duration with three significant digits: `950ns`, `12.3µs`, `1.20s`.
pub(crate) fn duration(ns: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1_000_000_000, "s"), (1_000_000, "ms"), (1_000, "µs")];
    for (scale, unit) in UNITS {
        if ns >= scale {
            let v = ns as f64 / scale as f64;
            return if v >= 100.0 {
                format!("{v:.0}{unit}")
            } else if v >= 10.0 {
                format!("{v:.1}{unit}")
            } else {
                format!("{v:.2}{unit}")
            };
        }
    }
    format!("{ns}ns")
}

fn signed_duration(delta: i128) -> String {
    let magnitude = u64::try_from(delta.unsigned_abs()).unwrap_or(u64::MAX);
    match delta {
        0 => "0".to_owned(),
        d if d > 0 => format!("+{}", duration(magnitude)),
        _ => format!("-{}", duration(magnitude)),
    }
}

fn signed_pct(pct: Option<f64>) -> String {
    match pct {
        None => "new".to_owned(),
        Some(0.0) => "0%".to_owned(),
        Some(p) => format!("{p:+.1}%"),
    }
}

fn percent(share: f64) -> String {
    format!("{:.1}%", share * 100.0)
}

/// Left-aligns the first column, right-aligns the others, two spaces apart.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    table_left(1, header, rows)
}

/// Left-aligns the first `left` columns, right-aligns the others, two
/// spaces apart.
fn table_left(left: usize, header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
            let pad = w.saturating_sub(cell.chars().count());
            if i < left {
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', pad));
            } else {
                line.push_str("  ");
                line.extend(std::iter::repeat_n(' ', pad));
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A total and, if it is estimated, `±` one standard error (`±?` when
/// nothing was sampled to estimate it from).
fn with_error(total: String, figure: Option<Figure>, show: fn(u64) -> String) -> String {
    match figure {
        Some(Figure::Estimated { standard_error }) => {
            format!("{total} ±{}", show(standard_error.max(0.0).ceil() as u64))
        }
        Some(Figure::Unsampled) => format!("{total} ±?"),
        Some(Figure::Exact) | None => total,
    }
}

/// `top`'s human table; rows of several runs get a RUN column first.
pub(crate) fn top_table(rows: &[LockRow]) -> String {
    // The holder column only for profiles with caused wait (lockprof's own).
    let blame = rows.iter().any(|r| r.caused_by.is_some());
    let runs = rows.iter().any(|r| r.run.is_some());
    let mut header = vec![
        "LOCK", "ACQUIRED", "CONT%", "WAIT", "WAIT%", "AVG WAIT", "MAX WAIT", "HOLD", "AVG HOLD",
    ];
    if blame {
        header.push("CAUSED BY");
    }
    if runs {
        header.insert(0, "RUN");
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let max = if r.max_wait_exact || r.max_wait_ns == 0 {
                duration(r.max_wait_ns)
            } else {
                format!("≥{}", duration(r.max_wait_ns))
            };
            let a = r.accuracy;
            let mut cells = vec![
                r.name.clone(),
                with_error(r.acquisitions.to_string(), a.map(|a| a.acquire), |n| {
                    n.to_string()
                }),
                r.contended_share().map_or_else(|| "-".to_owned(), percent),
                with_error(duration(r.wait_ns), a.map(|a| a.wait), duration),
                percent(r.wait_share),
                duration(r.avg_wait_ns()),
                max,
                with_error(duration(r.hold_ns), a.map(|a| a.hold), duration),
                duration(r.avg_hold_ns()),
            ];
            if blame {
                cells.push(r.caused_by.clone().unwrap_or_else(|| "-".to_owned()));
            }
            if runs {
                cells.insert(0, r.run.clone().unwrap_or_default());
            }
            cells
        })
        .collect();
    table_left(if runs { 2 } else { 1 }, &header, &cells)
}

/// Whether a total is exact and its standard error (0 if exact), as
/// JSON: `null` where the profile does not say, and the error `null` where
/// nothing was sampled.
fn figure_fields(figure: Option<Figure>) -> (Value, Value) {
    match figure {
        None => (Value::Null, Value::Null),
        Some(f) => (json!(f == Figure::Exact), json!(f.standard_error())),
    }
}

fn top_value(r: &LockRow) -> Value {
    let a = r.accuracy;
    let (acquisitions_exact, acquisitions_se) = figure_fields(a.map(|a| a.acquire));
    let (wait_exact, wait_se_ns) = figure_fields(a.map(|a| a.wait));
    let (hold_exact, hold_se_ns) = figure_fields(a.map(|a| a.hold));
    let mut value = json!({
        "lock": r.name,
        "named": r.named(),
        "acquisitions": r.acquisitions,
        "releases": r.releases,
        "wait_ns": r.wait_ns,
        "wait_share": r.wait_share,
        "avg_wait_ns": r.avg_wait_ns(),
        "max_wait_ns": r.max_wait_ns,
        "max_wait_exact": r.max_wait_exact,
        "hold_ns": r.hold_ns,
        "avg_hold_ns": r.avg_hold_ns(),
        "acquisitions_exact": acquisitions_exact,
        "acquisitions_se": acquisitions_se,
        "wait_exact": wait_exact,
        "wait_se_ns": wait_se_ns,
        "hold_exact": hold_exact,
        "hold_se_ns": hold_se_ns,
        "contended": a.and_then(|a| a.contended).filter(|_| r.contended_share().is_some()),
        "contended_share": r.contended_share(),
    });
    // Only profiles with caused wait (lockprof's own) have these two.
    if let (Some(by), Value::Object(fields)) = (&r.caused_by, &mut value) {
        fields.insert("caused_wait_ns".to_owned(), json!(r.caused_ns));
        fields.insert("caused_by".to_owned(), json!(by));
    }
    if let (Some(run), Value::Object(fields)) = (&r.run, &mut value) {
        fields.insert("run".to_owned(), json!(run));
    }
    value
}

/// `top --json`: an array of objects, one per lock.
pub(crate) fn top_json(rows: &[LockRow]) -> String {
    let mut s = Value::Array(rows.iter().map(top_value).collect()).to_string();
    s.push('\n');
    s
}

fn csv_field(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_owned()
    }
}

/// `top --csv`: a header line, then one line per lock; times in nanoseconds.
/// The accuracy fields are empty where the profile does not say. Rows of
/// several runs get a `run` column first.
pub(crate) fn top_csv(rows: &[LockRow]) -> String {
    let runs = rows.iter().any(|r| r.run.is_some());
    let mut out = String::from(if runs { "run," } else { "" });
    out.push_str(
        "lock,named,acquisitions,releases,wait_ns,wait_share,avg_wait_ns,max_wait_ns,max_wait_exact,hold_ns,avg_hold_ns,\
         acquisitions_exact,acquisitions_se,wait_exact,wait_se_ns,hold_exact,hold_se_ns,contended,contended_share\n",
    );
    // Exact: `true` and 0; estimated: `false` and the error rounded up;
    // unsampled: `false` and nothing; not said: nothing.
    let fields = |figure: Option<Figure>| match figure {
        None => (String::new(), String::new()),
        Some(f) => (
            (f == Figure::Exact).to_string(),
            f.standard_error()
                .map_or_else(String::new, |se| (se.max(0.0).ceil() as u64).to_string()),
        ),
    };
    for r in rows {
        let a = r.accuracy;
        let (acquisitions_exact, acquisitions_se) = fields(a.map(|a| a.acquire));
        let (wait_exact, wait_se_ns) = fields(a.map(|a| a.wait));
        let (hold_exact, hold_se_ns) = fields(a.map(|a| a.hold));
        let share = r.contended_share();
        if runs {
            let _ = write!(out, "{},", csv_field(r.run.as_deref().unwrap_or_default()));
        }
        let _ = writeln!(
            out,
            "{},{},{},{},{},{:.6},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            csv_field(&r.name),
            r.named(),
            r.acquisitions,
            r.releases,
            r.wait_ns,
            r.wait_share,
            r.avg_wait_ns(),
            r.max_wait_ns,
            r.max_wait_exact,
            r.hold_ns,
            r.avg_hold_ns(),
            acquisitions_exact,
            acquisitions_se,
            wait_exact,
            wait_se_ns,
            hold_exact,
            hold_se_ns,
            share
                .and(a.and_then(|a| a.contended))
                .map_or_else(String::new, |n| n.to_string()),
            share.map_or_else(String::new, |s| format!("{s:.6}")),
        );
    }
    out
}

/// `stacks`: per lock a heading, then its heaviest stacks, leaf first, one
/// frame per line.
pub(crate) fn stacks_text(locks: &[LockStacks], what: &str, limit: usize, depth: usize) -> String {
    let mut out = String::new();
    for (i, lock) in locks.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let n = lock.stacks.len();
        let _ = writeln!(
            out,
            "{}  {what} {}  {n} stack{}",
            lock.name,
            if what == "acquisitions" {
                lock.total.to_string()
            } else {
                duration(lock.total)
            },
            if n == 1 { "" } else { "s" }
        );
        for stack in lock.stacks.iter().take(limit) {
            let value = if what == "acquisitions" {
                String::new()
            } else {
                format!("  {}", duration(stack.value))
            };
            let _ = writeln!(
                out,
                "  {}{value}  {} {}",
                percent(stack.share),
                stack.events,
                match (what == "hold", stack.events == 1) {
                    (true, true) => "release",
                    (true, false) => "releases",
                    (false, true) => "acquisition",
                    (false, false) => "acquisitions",
                }
            );
            write_frames(&mut out, &stack.frames, depth, "      ");
        }
        if n > limit {
            let more = n - limit;
            let _ = writeln!(out, "  … {more} more stack{}", if more == 1 { "" } else { "s" });
        }
        if lock.left_out > 0 {
            let events = match (what == "hold", lock.left_out == 1) {
                (true, true) => "release",
                (true, false) => "releases",
                (false, true) => "acquisition",
                (false, false) => "acquisitions",
            };
            let _ = writeln!(
                out,
                "  ({} more {events} with no {what}: not shown)",
                lock.left_out
            );
        }
    }
    out
}

/// A stack's first `depth` frames, one per line after `indent`.
fn write_frames(out: &mut String, frames: &[Frame], depth: usize, indent: &str) {
    if frames.is_empty() {
        let _ = writeln!(out, "{indent}<no stack>");
    }
    for f in frames.iter().take(depth) {
        let _ = match (f.file.is_empty(), f.line) {
            (true, _) => writeln!(out, "{indent}{}", f.function),
            (false, 0) => writeln!(out, "{indent}{}  {}", f.function, f.file),
            (false, line) => writeln!(out, "{indent}{}  {}:{line}", f.function, f.file),
        };
    }
    if frames.len() > depth {
        let more = frames.len() - depth;
        let _ = writeln!(
            out,
            "{indent}… {more} more frame{}",
            if more == 1 { "" } else { "s" }
        );
    }
}

/// `blame`: per lock, its holder stacks with the wait they caused and their
/// own hold, and under each the waiters it held up.
pub(crate) fn blame_text(locks: &[LockBlame], limit: usize, waiters: usize, depth: usize) -> String {
    let mut out = String::new();
    for (i, lock) in locks.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let n = lock.holders.len();
        let _ = writeln!(
            out,
            "{}  caused wait {}  {n} holder stack{}",
            lock.name,
            duration(lock.caused_ns),
            if n == 1 { "" } else { "s" }
        );
        for h in lock.holders.iter().take(limit) {
            let _ = writeln!(
                out,
                "  {}  caused {}  while holding {} in all  held at:",
                percent(h.share),
                duration(h.caused_ns),
                duration(h.hold_ns),
            );
            write_frames(&mut out, &h.frames, depth, "      ");
            for (frames, ns, share) in h.waiters.iter().take(waiters) {
                let _ = writeln!(
                    out,
                    "    {} of it ({}) waiting at:",
                    percent(*share),
                    duration(*ns)
                );
                if frames.is_empty() {
                    out.push_str("        <waiter stack not in the profile>\n");
                } else {
                    write_frames(&mut out, frames, depth.min(4), "        ");
                }
            }
            if h.waiters.len() > waiters {
                let more = h.waiters.len() - waiters;
                let _ = writeln!(
                    out,
                    "    … {more} more waiter stack{}",
                    if more == 1 { "" } else { "s" }
                );
            }
        }
        if n > limit {
            let more = n - limit;
            let _ = writeln!(
                out,
                "  … {more} more holder stack{}",
                if more == 1 { "" } else { "s" }
            );
        }
    }
    out
}

fn frames_json(frames: &[Frame]) -> Value {
    Value::Array(
        frames
            .iter()
            .map(|f| json!({ "function": f.function, "file": f.file, "line": f.line }))
            .collect(),
    )
}

/// `blame --json`.
pub(crate) fn blame_json(locks: &[LockBlame]) -> String {
    let v: Vec<Value> = locks
        .iter()
        .map(|l| {
            json!({
                "lock": l.name,
                "caused_wait_ns": l.caused_ns,
                "holders": l.holders.iter().map(|h| json!({
                    "frames": frames_json(&h.frames),
                    "caused_wait_ns": h.caused_ns,
                    "hold_ns": h.hold_ns,
                    "share": h.share,
                    "waiters": h.waiters.iter().map(|(frames, ns, share)| json!({
                        "frames": frames_json(frames),
                        "caused_wait_ns": ns,
                        "share": share,
                    })).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let mut s = Value::Array(v).to_string();
    s.push('\n');
    s
}

/// `names`: `named` or `generic`, then the label.
pub(crate) fn names_text(names: &[(String, bool)]) -> String {
    let mut out = String::new();
    for (name, named) in names {
        let _ = writeln!(out, "{:<8} {name}", if *named { "named" } else { "generic" });
    }
    out
}

/// `names --json`.
pub(crate) fn names_json(names: &[(String, bool)]) -> String {
    let v: Vec<Value> = names
        .iter()
        .map(|(name, named)| json!({ "lock": name, "named": named }))
        .collect();
    let mut s = Value::Array(v).to_string();
    s.push('\n');
    s
}

/// `diff`'s human table.
pub(crate) fn diff_table(rows: &[DiffRow]) -> String {
    let header = [
        "LOCK",
        "WAIT BEFORE",
        "WAIT AFTER",
        "WAIT Δ",
        "WAIT Δ%",
        "HOLD BEFORE",
        "HOLD AFTER",
        "HOLD Δ",
        "HOLD Δ%",
    ];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                duration(r.wait_before),
                duration(r.wait_after),
                signed_duration(r.wait_delta()),
                signed_pct(r.wait_pct()),
                duration(r.hold_before),
                duration(r.hold_after),
                signed_duration(r.hold_delta()),
                signed_pct(r.hold_pct()),
            ]
        })
        .collect();
    table(&header, &cells)
}

/// `diff --json`.
pub(crate) fn diff_json(rows: &[DiffRow]) -> String {
    let v: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "lock": r.name,
                "wait_before_ns": r.wait_before,
                "wait_after_ns": r.wait_after,
                "wait_change_pct": r.wait_pct(),
                "hold_before_ns": r.hold_before,
                "hold_after_ns": r.hold_after,
                "hold_change_pct": r.hold_pct(),
            })
        })
        .collect();
    let mut s = Value::Array(v).to_string();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_keep_three_significant_digits() {
        assert_eq!(duration(0), "0ns");
        assert_eq!(duration(950), "950ns");
        assert_eq!(duration(1_000), "1.00µs");
        assert_eq!(duration(12_345), "12.3µs");
        assert_eq!(duration(40_100_000), "40.1ms");
        assert_eq!(duration(1_200_000_000), "1.20s");
        assert_eq!(duration(u64::MAX), "18446744074s");
        assert_eq!(signed_duration(-1_500), "-1.50µs");
        assert_eq!(signed_duration(i128::MIN), "-18446744074s");
    }

    #[test]
    fn csv_quotes_fields_with_separators() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"x\""), "\"say \"\"x\"\"\"");
        assert_eq!(csv_field("app.rs:1:x"), "app.rs:1:x");
    }

    #[test]
    fn tables_align_columns() {
        let t = table(
            &["A", "B"],
            &[
                vec!["long name".into(), "1".into()],
                vec!["x".into(), "100".into()],
            ],
        );
        assert_eq!(t, "A            B\nlong name    1\nx          100\n");
    }

    #[test]
    fn tables_can_left_align_more_columns() {
        let t = table_left(
            2,
            &["R", "A", "B"],
            &[
                vec!["run.1".into(), "x".into(), "1".into()],
                vec!["r".into(), "long".into(), "100".into()],
            ],
        );
        assert_eq!(t, "R      A       B\nrun.1  x       1\nr      long  100\n");
    }
}
