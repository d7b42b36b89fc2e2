//! From a decoded profile to report rows: per lock totals, heaviest stacks,
//! names, diffs. Pure functions over [`LockProfile`]; they never panic, even on
//! negative or huge values (clamped to zero, sums saturate).

use std::collections::{btree_map, BTreeMap, BTreeSet, HashMap};

use lockprof::read::{Figure, Frame, LockName, LockProfile, LockSample};

/// What to rank locks and stacks by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum By {
    /// Total time spent waiting to acquire.
    Wait,
    /// Total time held.
    Hold,
    /// Number of acquisitions.
    Count,
    /// Waiting that holders caused others (`lock-caused-wait`, charged to
    /// the holder's stack).
    Caused,
}

/// The label of samples that carry no `lock name`.
pub(crate) const UNLABELLED: &str = "<no lock name>";

fn non_negative(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn lock_name(s: &LockSample) -> &str {
    s.lock_name.as_deref().unwrap_or(UNLABELLED)
}

/// One lock's totals.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LockRow {
    pub(crate) name: String,
    pub(crate) acquisitions: u64,
    pub(crate) releases: u64,
    pub(crate) wait_ns: u64,
    /// The longest single wait if `max_wait_exact`, else a lower bound: the
    /// largest per-sample mean (lockprof aggregates events per stack and
    /// thread; Datadog's Python profiler writes one sample per event).
    pub(crate) max_wait_ns: u64,
    pub(crate) max_wait_exact: bool,
    pub(crate) hold_ns: u64,
    /// This lock's share of all locks' wait, 0 to 1.
    pub(crate) wait_share: f64,
    /// What the profiles say of the totals; `None` when they do not say.
    pub(crate) accuracy: Option<Accuracy>,
    /// Waiting this lock's holders caused others (`lock-caused-wait`).
    pub(crate) caused_ns: u64,
    /// The top frame of the holder stack that caused the most of it.
    pub(crate) caused_by: Option<String>,
    /// The run the row is of, when `top` shows several (see
    /// [`run_name`](lockprof::read::run_name)); `None` for one.
    pub(crate) run: Option<String>,
}

impl LockRow {
    pub(crate) fn avg_wait_ns(&self) -> u64 {
        self.wait_ns.checked_div(self.acquisitions).unwrap_or(0)
    }

    pub(crate) fn avg_hold_ns(&self) -> u64 {
        self.hold_ns.checked_div(self.releases).unwrap_or(0)
    }

    pub(crate) fn named(&self) -> bool {
        LockName::parse(&self.name).is_some_and(|name| name.is_named())
    }

    /// Contended acquisitions over all acquisitions, 0 to 1, when the
    /// profiles state the contended count exactly.
    pub(crate) fn contended_share(&self) -> Option<f64> {
        let a = self.accuracy?;
        let contended = a.contended?;
        (a.acquire == Figure::Exact && self.acquisitions > 0)
            .then(|| (contended as f64 / self.acquisitions as f64).min(1.0))
    }

    fn key(&self, by: By) -> u64 {
        match by {
            By::Wait => self.wait_ns,
            By::Hold => self.hold_ns,
            By::Count => self.acquisitions,
            By::Caused => self.caused_ns,
        }
    }
}

/// One row per lock name, heaviest first by `by` (ties by name).
pub(crate) fn top(profile: &LockProfile, by: By) -> Vec<LockRow> {
    let mut rows: BTreeMap<&str, LockRow> = BTreeMap::new();
    for s in &profile.samples {
        let name = lock_name(s);
        let row = rows.entry(name).or_insert_with(|| LockRow {
            name: name.to_owned(),
            acquisitions: 0,
            releases: 0,
            wait_ns: 0,
            max_wait_ns: 0,
            max_wait_exact: true,
            hold_ns: 0,
            wait_share: 0.0,
            accuracy: None,
            caused_ns: 0,
            caused_by: None,
            run: None,
        });
        let (acquire, wait) = (non_negative(s.acquire), non_negative(s.acquire_wait_ns));
        row.acquisitions = row.acquisitions.saturating_add(acquire);
        row.releases = row.releases.saturating_add(non_negative(s.release));
        row.wait_ns = row.wait_ns.saturating_add(wait);
        row.hold_ns = row.hold_ns.saturating_add(non_negative(s.release_hold_ns));
        row.caused_ns = row.caused_ns.saturating_add(non_negative(s.caused_wait_ns));
        if wait > 0 {
            if acquire > 1 {
                row.max_wait_exact = false;
            }
            row.max_wait_ns = row.max_wait_ns.max(wait / acquire.max(1));
        }
    }
    // Heaviest first: the first holder seen of a lock is its top one.
    for b in profile.blame() {
        if let Some(row) = rows.get_mut(b.lock_name.as_str()) {
            if row.caused_by.is_none() {
                row.caused_by = user_frames(&b.holder).first().map(frame_label);
            }
        }
    }
    let total_wait = rows.values().fold(0u64, |t, r| t.saturating_add(r.wait_ns));
    let mut rows: Vec<LockRow> = rows.into_values().collect();
    for r in &mut rows {
        if total_wait > 0 {
            r.wait_share = r.wait_ns as f64 / total_wait as f64;
        }
    }
    rows.sort_by(|a, b| b.key(by).cmp(&a.key(by)).then_with(|| a.name.cmp(&b.name)));
    rows
}

/// Rows of several runs as one table: each tagged with its run, every
/// lock's wait share taken of all runs' wait, heaviest first by `by` (ties
/// by run, then name).
pub(crate) fn top_of_runs(runs: Vec<(String, Vec<LockRow>)>, by: By) -> Vec<LockRow> {
    let mut rows: Vec<LockRow> = runs
        .into_iter()
        .flat_map(|(run, rows)| {
            rows.into_iter().map(move |r| LockRow {
                run: Some(run.clone()),
                ..r
            })
        })
        .collect();
    let total_wait = rows.iter().fold(0u64, |t, r| t.saturating_add(r.wait_ns));
    for r in &mut rows {
        r.wait_share = if total_wait > 0 {
            r.wait_ns as f64 / total_wait as f64
        } else {
            0.0
        };
    }
    rows.sort_by(|a, b| {
        b.key(by)
            .cmp(&a.key(by))
            .then_with(|| a.run.cmp(&b.run))
            .then_with(|| a.name.cmp(&b.name))
    });
    rows
}

/// What the profiles say of one lock name's totals, its modes combined.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Accuracy {
    pub(crate) acquire: Figure,
    pub(crate) wait: Figure,
    pub(crate) hold: Figure,
    /// Exact; `None` when not known.
    pub(crate) contended: Option<u64>,
}

impl Accuracy {
    fn combine(self, other: Accuracy) -> Accuracy {
        Accuracy {
            acquire: self.acquire.combine(other.acquire),
            wait: self.wait.combine(other.wait),
            hold: self.hold.combine(other.hold),
            contended: self
                .contended
                .zip(other.contended)
                .map(|(a, b)| a.saturating_add(b)),
        }
    }
}

/// Per lock name with samples: what the profiles read say of its totals;
/// `None` where a profile with samples of it does not say (an older lockprof
/// profile, or another profiler's).
pub(crate) type Accuracies = BTreeMap<String, Option<Accuracy>>;

/// What one profile says, per lock name with samples in it.
pub(crate) fn accuracy(profile: &LockProfile) -> Accuracies {
    let mut stated: BTreeMap<String, Accuracy> = BTreeMap::new();
    for a in profile.accuracy() {
        let figures = Accuracy {
            acquire: a.acquire,
            wait: a.wait,
            hold: a.hold,
            contended: a.contended,
        };
        match stated.entry(a.lock) {
            btree_map::Entry::Vacant(e) => {
                e.insert(figures);
            }
            btree_map::Entry::Occupied(mut e) => {
                let combined = e.get().combine(figures);
                e.insert(combined);
            }
        }
    }
    let names: BTreeSet<&str> = profile.samples.iter().map(lock_name).collect();
    names
        .into_iter()
        .map(|name| (name.to_owned(), stated.get(name).copied()))
        .collect()
}

/// Adds what another profile, merged with these, says: independent totals,
/// so standard errors add as the root of the sum of squares.
pub(crate) fn merge_accuracy(into: &mut Accuracies, other: Accuracies) {
    for (name, a) in other {
        match into.entry(name) {
            btree_map::Entry::Vacant(e) => {
                e.insert(a);
            }
            btree_map::Entry::Occupied(mut e) => {
                let combined = e.get().zip(a).map(|(x, y)| x.combine(y));
                e.insert(combined);
            }
        }
    }
}

/// Attaches to each row what the profiles say of its lock.
pub(crate) fn with_accuracy(rows: &mut [LockRow], accuracies: &Accuracies) {
    for r in rows {
        r.accuracy = accuracies.get(&r.name).copied().flatten();
    }
}

/// One call stack of a lock and its weight.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StackRow {
    /// Leaf first.
    pub(crate) frames: Vec<Frame>,
    pub(crate) value: u64,
    /// Events behind it: acquisitions (wait, count) or releases (hold).
    pub(crate) events: u64,
    /// Share of the lock's total, 0 to 1.
    pub(crate) share: f64,
}

/// A lock's heaviest stacks.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LockStacks {
    pub(crate) name: String,
    pub(crate) total: u64,
    /// Heaviest first, ties by frames.
    pub(crate) stacks: Vec<StackRow>,
    /// Events whose value is zero (acquisitions that did not wait, releases
    /// of no measurable hold): counted, but their stacks are not shown.
    pub(crate) left_out: u64,
}

/// The value a sample contributes under `by`, and its event count.
fn weight(s: &LockSample, by: By) -> (u64, u64) {
    match by {
        By::Wait => (non_negative(s.acquire_wait_ns), non_negative(s.acquire)),
        By::Hold => (non_negative(s.release_hold_ns), non_negative(s.release)),
        By::Count => (non_negative(s.acquire), non_negative(s.acquire)),
        By::Caused => (non_negative(s.caused_wait_ns), 0),
    }
}

/// The frames of a stack above Rust's runtime, as Rust's own short
/// backtraces show them: everything from `__rust_begin_short_backtrace`
/// towards the root goes, and the `FnOnce::call_once` shims just before it.
/// Other stacks (Python's, or ones without the marker) are kept whole.
pub(crate) fn user_frames(frames: &[Frame]) -> &[Frame] {
    let Some(mut end) = frames
        .iter()
        .position(|f| f.function.contains("__rust_begin_short_backtrace"))
    else {
        return frames;
    };
    while end > 1 && frames[end - 1].function.ends_with("FnOnce::call_once") {
        end -= 1;
    }
    &frames[..end]
}

/// Per lock with a non-zero total under `by`, its stacks (threads merged),
/// heaviest lock first. `lock` keeps only the locks it matches (see
/// [`matches_lock`]); unless `full`, runtime frames are cut (see
/// [`user_frames`]).
pub(crate) fn stacks(profile: &LockProfile, by: By, lock: Option<&str>, full: bool) -> Vec<LockStacks> {
    let mut per_lock: BTreeMap<&str, HashMap<&[Frame], (u64, u64)>> = BTreeMap::new();
    let mut left_out: HashMap<&str, u64> = HashMap::new();
    for s in &profile.samples {
        let name = lock_name(s);
        if lock.is_some_and(|l| !matches_lock(name, l)) {
            continue;
        }
        let (value, events) = weight(s, by);
        if value == 0 {
            let n = left_out.entry(name).or_default();
            *n = n.saturating_add(events);
            continue;
        }
        let entry = per_lock
            .entry(name)
            .or_default()
            .entry(if full { &s.frames } else { user_frames(&s.frames) })
            .or_insert((0, 0));
        entry.0 = entry.0.saturating_add(value);
        entry.1 = entry.1.saturating_add(events);
    }
    let mut out: Vec<LockStacks> = per_lock
        .into_iter()
        .map(|(name, stacks)| {
            let total = stacks.values().fold(0u64, |t, (v, _)| t.saturating_add(*v));
            let mut stacks: Vec<StackRow> = stacks
                .into_iter()
                .map(|(frames, (value, events))| StackRow {
                    frames: frames.to_vec(),
                    value,
                    events,
                    share: if total > 0 {
                        value as f64 / total as f64
                    } else {
                        0.0
                    },
                })
                .collect();
            stacks.sort_by(|a, b| {
                b.value
                    .cmp(&a.value)
                    .then_with(|| frames_key(&a.frames).cmp(&frames_key(&b.frames)))
            });
            LockStacks {
                name: name.to_owned(),
                total,
                stacks,
                left_out: left_out.get(name).copied().unwrap_or(0),
            }
        })
        .collect();
    out.sort_by(|a, b| b.total.cmp(&a.total).then_with(|| a.name.cmp(&b.name)));
    out
}

/// How many locks (those `lock` matches) have a zero total under `by`, and
/// so no entry in [`stacks`].
pub(crate) fn locks_without(profile: &LockProfile, by: By, lock: Option<&str>) -> usize {
    let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
    for s in &profile.samples {
        let name = lock_name(s);
        if lock.is_none_or(|l| matches_lock(name, l)) {
            let t = totals.entry(name).or_default();
            *t = t.saturating_add(weight(s, by).0);
        }
    }
    totals.values().filter(|&&t| t == 0).count()
}

fn frames_key(frames: &[Frame]) -> Vec<(&str, &str, i64)> {
    frames
        .iter()
        .map(|f| (f.function.as_str(), f.file.as_str(), f.line))
        .collect()
}

/// One lock's holders, for `lockprof blame`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LockBlame {
    pub(crate) name: String,
    /// Caused wait over all its holders.
    pub(crate) caused_ns: u64,
    pub(crate) holders: Vec<HolderRow>,
}

/// One holder stack of a lock and the waiters it held up.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HolderRow {
    pub(crate) frames: Vec<Frame>,
    pub(crate) caused_ns: u64,
    pub(crate) hold_ns: u64,
    /// Its share of the lock's caused wait, 0 to 1.
    pub(crate) share: f64,
    /// `(frames, caused_ns, share of this holder's)`, heaviest first.
    pub(crate) waiters: Vec<(Vec<Frame>, u64, f64)>,
}

/// Per lock, heaviest caused wait first, its holder stacks and their
/// waiters (see [`LockProfile::blame`]); `lock` and `full` as in [`stacks`].
pub(crate) fn blame(profile: &LockProfile, lock: Option<&str>, full: bool) -> Vec<LockBlame> {
    let cut = |f: &[Frame]| if full { f.to_vec() } else { user_frames(f).to_vec() };
    let mut per_lock: BTreeMap<String, LockBlame> = BTreeMap::new();
    for b in profile.blame() {
        if lock.is_some_and(|l| !matches_lock(&b.lock_name, l)) {
            continue;
        }
        let caused = non_negative(b.caused_wait_ns);
        let entry = per_lock.entry(b.lock_name.clone()).or_insert_with(|| LockBlame {
            name: b.lock_name.clone(),
            caused_ns: 0,
            holders: Vec::new(),
        });
        entry.caused_ns = entry.caused_ns.saturating_add(caused);
        let share_of = |part: u64| {
            if caused > 0 {
                part as f64 / caused as f64
            } else {
                0.0
            }
        };
        entry.holders.push(HolderRow {
            frames: cut(&b.holder),
            caused_ns: caused,
            hold_ns: non_negative(b.hold_ns),
            share: 0.0,
            waiters: b
                .waiters
                .iter()
                .map(|w| {
                    let ns = non_negative(w.caused_wait_ns);
                    (cut(&w.frames), ns, share_of(ns))
                })
                .collect(),
        });
    }
    let mut out: Vec<LockBlame> = per_lock.into_values().collect();
    for l in &mut out {
        let total = l.caused_ns;
        for h in &mut l.holders {
            h.share = if total > 0 {
                h.caused_ns as f64 / total as f64
            } else {
                0.0
            };
        }
    }
    out.sort_by(|a, b| b.caused_ns.cmp(&a.caused_ns).then_with(|| a.name.cmp(&b.name)));
    out
}

/// Whether the lock labelled `label` is the one the user named `wanted`: the
/// whole label, or its variable name, which for an instance
/// (`shard_lock[2]`, see `named!`) may leave the instance out.
pub(crate) fn matches_lock(label: &str, wanted: &str) -> bool {
    label == wanted || LockName::parse(label).is_some_and(|name| name.matches(wanted))
}

/// One lock's change between two profiles.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DiffRow {
    pub(crate) name: String,
    pub(crate) wait_before: u64,
    pub(crate) wait_after: u64,
    pub(crate) hold_before: u64,
    pub(crate) hold_after: u64,
}

impl DiffRow {
    pub(crate) fn wait_delta(&self) -> i128 {
        i128::from(self.wait_after) - i128::from(self.wait_before)
    }

    pub(crate) fn hold_delta(&self) -> i128 {
        i128::from(self.hold_after) - i128::from(self.hold_before)
    }

    /// Wait change in percent; `None` when it grew from zero.
    pub(crate) fn wait_pct(&self) -> Option<f64> {
        pct(self.wait_before, self.wait_after)
    }

    /// Hold change in percent; `None` when it grew from zero.
    pub(crate) fn hold_pct(&self) -> Option<f64> {
        pct(self.hold_before, self.hold_after)
    }

    /// Whether wait grew by more than `limit` percent (growth from zero
    /// always does).
    pub(crate) fn wait_grew_over(&self, limit: f64) -> bool {
        match self.wait_pct() {
            Some(p) => p > limit,
            None => true,
        }
    }
}

fn pct(before: u64, after: u64) -> Option<f64> {
    if before == 0 {
        return if after == 0 { Some(0.0) } else { None };
    }
    Some((after as f64 - before as f64) / before as f64 * 100.0)
}

/// Every lock of either profile, the largest wait increase first (ties by
/// name).
pub(crate) fn diff(before: &LockProfile, after: &LockProfile) -> Vec<DiffRow> {
    let mut rows: BTreeMap<String, DiffRow> = BTreeMap::new();
    let mut add = |profile: &LockProfile, is_after: bool| {
        for r in top(profile, By::Wait) {
            let row = rows.entry(r.name.clone()).or_insert_with(|| DiffRow {
                name: r.name.clone(),
                wait_before: 0,
                wait_after: 0,
                hold_before: 0,
                hold_after: 0,
            });
            if is_after {
                row.wait_after = r.wait_ns;
                row.hold_after = r.hold_ns;
            } else {
                row.wait_before = r.wait_ns;
                row.hold_before = r.hold_ns;
            }
        }
    };
    add(before, false);
    add(after, true);
    let mut rows: Vec<DiffRow> = rows.into_values().collect();
    rows.sort_by(|a, b| {
        b.wait_delta()
            .cmp(&a.wait_delta())
            .then_with(|| b.hold_delta().cmp(&a.hold_delta()))
            .then_with(|| a.name.cmp(&b.name))
    });
    rows
}

/// Folded stacks for a flame graph: `lock;leaf;…;root value`, one line per
/// distinct stack with a non-zero value under `by`, sorted; unless `full`,
/// runtime frames are cut (see [`user_frames`]).
pub(crate) fn folded(profile: &LockProfile, by: By, full: bool) -> Vec<String> {
    let mut lines: BTreeMap<String, u64> = BTreeMap::new();
    for s in &profile.samples {
        let (value, _) = weight(s, by);
        if value == 0 {
            continue;
        }
        let mut line = folded_frame(lock_name(s));
        let frames = if full { &s.frames } else { user_frames(&s.frames) };
        for f in frames {
            line.push(';');
            line.push_str(&folded_frame(&frame_label(f)));
        }
        let v = lines.entry(line).or_insert(0);
        *v = v.saturating_add(value);
    }
    lines
        .into_iter()
        .map(|(stack, v)| format!("{stack} {v}"))
        .collect()
}

/// `function file:line`, with the file's last component only.
pub(crate) fn frame_label(f: &Frame) -> String {
    let file = f.file.rsplit(['/', '\\']).next().unwrap_or(&f.file);
    match (file.is_empty(), f.line) {
        (true, _) => f.function.clone(),
        (false, 0) => format!("{} {file}", f.function),
        (false, line) => format!("{} {file}:{line}", f.function),
    }
}

/// A frame name that cannot break the folded format: no `;`, no newline.
fn folded_frame(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| match c {
            ';' => ',',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect();
    if cleaned.trim().is_empty() {
        "<unknown>".to_owned()
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockprof::read::{labels, LabelValue};
    use proptest::prelude::*;

    fn frame(function: &str, line: i64) -> Frame {
        Frame {
            function: function.to_owned(),
            file: "/src/app.rs".to_owned(),
            line,
        }
    }

    fn sample(
        name: &str,
        acquire: i64,
        wait: i64,
        release: i64,
        hold: i64,
        frames: Vec<Frame>,
    ) -> LockSample {
        LockSample {
            lock_name: Some(name.to_owned()),
            acquire,
            acquire_wait_ns: wait,
            release,
            release_hold_ns: hold,
            labels: vec![(labels::LOCK_NAME.to_owned(), LabelValue::Str(name.to_owned()))],
            frames,
            ..Default::default()
        }
    }

    fn profile(samples: Vec<LockSample>) -> LockProfile {
        LockProfile {
            sample_types: vec![("lock-acquire".to_owned(), "count".to_owned())],
            samples,
            time_nanos: 0,
            duration_nanos: 0,
            period_type: None,
            period: 1,
            comments: Vec::new(),
        }
    }

    #[test]
    fn a_lock_is_found_by_its_label_or_its_variable_name() {
        assert!(!LockName::parse(UNLABELLED).is_some_and(|n| n.is_named()));
        assert!(matches_lock("app.rs:12:queue", "queue"));
        assert!(matches_lock("app.rs:12", "app.rs:12"));
        assert!(!matches_lock("app.rs:12:queue", "que"));
    }

    #[test]
    fn top_sums_per_lock_and_ranks_by_wait() {
        let p = profile(vec![
            sample("a.rs:1:a", 3, 300, 0, 0, vec![frame("f", 1)]),
            sample("a.rs:1:a", 0, 0, 3, 3000, vec![frame("f", 1)]),
            sample("b.rs:2:b", 1, 100, 0, 0, vec![]),
            sample("b.rs:2:b", 0, 0, 1, 50, vec![]),
        ]);
        let rows = top(&p, By::Wait);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].name, "a.rs:1:a");
        assert_eq!(
            (rows[0].acquisitions, rows[0].wait_ns, rows[0].hold_ns),
            (3, 300, 3000)
        );
        assert_eq!((rows[0].avg_wait_ns(), rows[0].avg_hold_ns()), (100, 1000));
        assert_eq!((rows[0].max_wait_ns, rows[0].max_wait_exact), (100, false));
        assert_eq!((rows[1].max_wait_ns, rows[1].max_wait_exact), (100, true));
        assert!((rows[0].wait_share - 0.75).abs() < 1e-9);
        assert_eq!(top(&p, By::Count)[0].name, "a.rs:1:a");
    }

    #[test]
    fn merged_profiles_combine_standard_errors_and_forget_what_one_does_not_say() {
        let with_comments = |hold_se: u32, contended: u64| {
            let mut p = profile(vec![
                sample("a.rs:1:a", 100, 500, 100, 9000, vec![]),
                sample("b.rs:1:b", 10, 0, 10, 10, vec![]),
            ]);
            p.comments = vec![
                "lockprof 0.1.0: capture_pct=1".to_owned(),
                format!(
                    "lockprof accuracy: acquire=exact wait=exact release=exact hold=se:{hold_se} contended={contended} lock=a.rs:1:a"
                ),
            ];
            p
        };
        let mut acc = accuracy(&with_comments(3, 20));
        // b has samples but no comment: not known.
        assert_eq!(acc.get("b.rs:1:b"), Some(&None));
        merge_accuracy(&mut acc, accuracy(&with_comments(4, 30)));
        let a = acc["a.rs:1:a"].unwrap();
        assert_eq!(a.hold, Figure::Estimated { standard_error: 5.0 });
        assert_eq!((a.wait, a.contended), (Figure::Exact, Some(50)));

        let mut merged = with_comments(3, 20);
        merged.merge(with_comments(4, 30));
        let mut rows = top(&merged, By::Hold);
        with_accuracy(&mut rows, &acc);
        assert_eq!(rows[0].contended_share(), Some(0.25));
        assert_eq!(rows[1].contended_share(), None);
        let table = crate::render::top_table(&rows);
        assert!(table.lines().nth(1).unwrap().contains("18.0µs ±5ns"), "{table}");

        // An older profile with samples of a: nothing is known of a any more.
        merge_accuracy(
            &mut acc,
            accuracy(&profile(vec![sample("a.rs:1:a", 1, 0, 1, 1, vec![])])),
        );
        assert_eq!(acc["a.rs:1:a"], None);
    }

    #[test]
    fn a_variable_name_matches_every_instance_of_it() {
        assert!(matches_lock("a.rs:3:shard_lock[2]", "shard_lock"));
        assert!(matches_lock("a.rs:3:shard_lock[2]", "shard_lock[2]"));
        assert!(!matches_lock("a.rs:3:shard_lock[2]", "shard_lock[1]"));
        assert!(!matches_lock("a.rs:3:shard_locks", "shard_lock"));
        assert!(matches_lock("a.rs:3:queue", "queue"));
    }

    #[test]
    fn stacks_merge_threads_and_rank_heaviest_first() {
        let p = profile(vec![
            sample("a.rs:1:a", 1, 100, 0, 0, vec![frame("f", 1)]),
            sample("a.rs:1:a", 1, 100, 0, 0, vec![frame("f", 1)]),
            sample("a.rs:1:a", 1, 600, 0, 0, vec![frame("g", 2)]),
            sample("a.rs:1:a", 3, 0, 0, 0, vec![frame("k", 4)]),
            sample("b.rs:1:b", 1, 0, 0, 0, vec![frame("h", 3)]),
        ]);
        let s = stacks(&p, By::Wait, None, false);
        assert_eq!(s.len(), 1, "a lock without wait has no wait stacks");
        assert_eq!(s[0].total, 800);
        assert_eq!(s[0].stacks[0].frames, vec![frame("g", 2)]);
        assert_eq!((s[0].stacks[1].value, s[0].stacks[1].events), (200, 2));
        assert_eq!(s[0].left_out, 3, "acquisitions that did not wait are counted");
        assert_eq!(locks_without(&p, By::Wait, None), 1);
        assert_eq!(locks_without(&p, By::Wait, Some("a")), 0);
        assert!(stacks(&p, By::Count, Some("b"), false).len() == 1);
        assert_eq!(locks_without(&p, By::Count, None), 0);
    }

    #[test]
    fn diff_ranks_by_wait_growth_and_flags_new_waits() {
        let before = profile(vec![sample("a.rs:1:a", 1, 100, 1, 10, vec![])]);
        let after = profile(vec![
            sample("a.rs:1:a", 1, 150, 1, 10, vec![]),
            sample("b.rs:1:b", 1, 1000, 0, 0, vec![]),
        ]);
        let rows = diff(&before, &after);
        assert_eq!(rows[0].name, "b.rs:1:b");
        assert_eq!(rows[0].wait_pct(), None);
        assert!(rows[0].wait_grew_over(1000.0));
        assert_eq!(rows[1].wait_pct(), Some(50.0));
        assert!(rows[1].wait_grew_over(49.0));
        assert!(!rows[1].wait_grew_over(50.0));
    }

    #[test]
    fn folded_puts_the_lock_first_then_the_leaf() {
        let p = profile(vec![sample(
            "a.rs:1:a;x",
            1,
            100,
            0,
            0,
            vec![frame("leaf", 1), frame("main", 9)],
        )]);
        assert_eq!(
            folded(&p, By::Wait, false),
            vec!["a.rs:1:a,x;leaf app.rs:1;main app.rs:9 100"]
        );
        assert!(folded(&p, By::Hold, false).is_empty());
    }

    #[test]
    fn runtime_frames_are_cut_at_the_short_backtrace_marker() {
        let f = |name: &str| frame(name, 1);
        let main = [
            f("app::main"),
            f("core::ops::function::FnOnce::call_once"),
            f("std::sys::backtrace::__rust_begin_short_backtrace"),
            f("std::rt::lang_start"),
        ];
        assert_eq!(user_frames(&main), &main[..1]);
        let thread = [
            f("app::worker"),
            f("app::main::{{closure}}"),
            f("std::sys::backtrace::__rust_begin_short_backtrace"),
        ];
        assert_eq!(user_frames(&thread), &thread[..2]);
        let python = [f("worker"), f("Thread.run")];
        assert_eq!(user_frames(&python), &python[..]);
        let only_marker = [f("std::sys::backtrace::__rust_begin_short_backtrace")];
        assert!(user_frames(&only_marker).is_empty());
    }

    fn arb_sample() -> impl Strategy<Value = LockSample> {
        let value = prop_oneof![
            Just(0i64),
            Just(1),
            Just(-1),
            Just(i64::MAX),
            Just(i64::MIN),
            any::<i64>()
        ];
        let name = prop_oneof![
            Just(None),
            Just(Some(String::new())),
            Just(Some(":".to_owned())),
            ".{0,12}".prop_map(Some)
        ];
        let frames = proptest::collection::vec((".{0,8}", ".{0,8}", any::<i64>()), 0..4);
        let values = (value.clone(), value.clone(), value.clone(), value.clone(), value);
        (name, values, frames).prop_map(|(n, (a, w, r, h, c), f)| {
            LockSample {
                lock_name: n,
                acquire: a,
                acquire_wait_ns: w,
                release: r,
                release_hold_ns: h,
                caused_wait_ns: c,
                // Pairs caused-wait samples with waiter samples now and then.
                labels: vec![
                    (
                        labels::WAITER_STACK_ID.to_owned(),
                        LabelValue::Num(w.rem_euclid(3)),
                    ),
                    (labels::STACK_ID.to_owned(), LabelValue::Num(r.rem_euclid(3))),
                ],
                frames: f
                    .into_iter()
                    .map(|(function, file, line)| Frame { function, file, line })
                    .collect(),
            }
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
        /// Fuzz: the report builders never panic, whatever the values.
        #[test]
        fn report_builders_never_panic(
            a in proptest::collection::vec(arb_sample(), 0..12),
            b in proptest::collection::vec(arb_sample(), 0..12),
        ) {
            let (pa, pb) = (profile(a), profile(b));
            for lock in [None, Some("x")] {
                let locks = blame(&pa, lock, false);
                for l in &locks {
                    for h in &l.holders {
                        prop_assert!((0.0..=1.0).contains(&h.share));
                    }
                }
                let _ = crate::render::blame_text(&locks, 2, 2, 3);
                let _ = crate::render::blame_json(&locks);
            }
            for by in [By::Wait, By::Hold, By::Count, By::Caused] {
                let rows = top(&pa, by);
                for r in &rows {
                    let _ = (r.avg_wait_ns(), r.avg_hold_ns(), r.named());
                    prop_assert!((0.0..=1.0).contains(&r.wait_share));
                }
                let _ = stacks(&pa, by, Some("x"), true);
                let _ = stacks(&pa, by, None, false);
                for l in folded(&pa, by, false) {
                    prop_assert_eq!(l.lines().count(), 1);
                }
            }
            for r in diff(&pa, &pb) {
                let _ = (r.wait_pct(), r.hold_pct(), r.wait_grew_over(10.0));
            }
            let _ = crate::render::top_table(&top(&pa, By::Wait));
        }
    }
}
