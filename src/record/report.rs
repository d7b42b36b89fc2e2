//! From one period's sampled aggregates and exact totals to the values written
//! in the profile.
//!
//! # The estimator
//!
//! For each lock name and mode, over one period:
//! - **Weights.** A sampled event drawn under the sampling budget (see
//!   `sampler`) stands for `2^shift` events sampled at `capture_pct`; below,
//!   `n` and `n_k` are sums of these weights, and sampled times are summed
//!   weighted the same way. Without budget pressure every weight is 1.
//! - **Counts.** The exact number of acquisitions `N` of each lock name and
//!   mode is known (see `stats`): each stack gets `N × n_k / n`, where `n_k`
//!   of the `n` sampled acquisitions had that stack: a ratio estimator whose
//!   total is exactly `N`, and which also corrects for events dropped on a
//!   full queue. Where it is not known each sampled event stands for
//!   `100 / capture_pct` acquisitions (Horvitz–Thompson).
//! - **Wait.** Every contended acquisition is timed, so a lock's total wait
//!   `W` is exact and each stack gets `W × w_k / w`, its share of the sampled
//!   wait.
//! - **Hold.** Measured on sampled acquisitions only (an unsampled one reads
//!   no clock); each stack gets its sampled time scaled by the same factor as
//!   its count (`N / n`, or `100 / capture_pct`).
//! - When a lock was used but none of its acquisitions was sampled in the
//!   period, its exact totals go to one sample whose only frame is
//!   `<unsampled>`, so that per-lock counts stay exact.
//!
//! Integer shares are rounded by largest remainder, so they add up exactly.
//!
//! # Standard errors
//!
//! [`accuracy`] states, per lock name and mode, which totals are exact and
//! the standard error of the others (written as comments, see
//! `crate::accuracy`). Counts are exact where `N` is known, the wait where
//! every contended acquisition was timed, and any total when every event was
//! recorded (capture 100 %, every weight 1, `Σw = N`). The rest:
//!
//! The countdown samples each event independently (Poisson sampling): one
//! drawn at shift `s` was included with probability `π = p / 2^s`, so it
//! stands for `W = 1/π = c·w` events, with `w = 2^s` and `c = 1/p`. For a
//! total of values `v` over a population `U` of events, from the sample `S`:
//! - **Horvitz–Thompson**, `T̂ = Σ_S W·v` (no exact `N`): `Var T̂ =
//!   Σ_U (1−π)/π · v²`, estimated without bias by `Σ_S (1−π)/π² · v² =
//!   Σ_S W(W−1)·v²`, that is `V̂ = c²·Σw²v² − c·Σw·v²`. A count is the case
//!   `v = 1`: `V̂ = c²·Σw² − c·Σw`.
//! - **Ratio**, `T̂ = N·Σw·v/Σw` (`N` exact): linearised around `R = T/N`,
//!   `T̂ − T ≈ Σ_S W(v − R) − Σ_U (v − R)`, the Horvitz–Thompson error of a
//!   total of residuals, so `V̂ = Σ_S W(W−1)(v − R̂)²` with `R̂ = Σw·v/Σw`.
//!   Here `c = N/Σw`, the estimator's own scale (an event dropped on a full
//!   queue counts as not drawn): `V̂ = c²·Σw²(v−R̂)² − c·Σw(v−R̂)²`, expanded
//!   into the sums `Σw`, `Σw·v`, `Σw·v²`, `Σw²`, `Σw²·v`, `Σw²·v²` that the
//!   recorder keeps per aggregate (`spread::Spread`).
//!
//! With every weight 1 and `n` events sampled, the ratio `V̂` is
//! `N²(1 − n/N)·s²/n` (`s²` the sampled values' variance with divisor `n`),
//! the textbook ratio variance; at `n ≈ pN` it is `N(1−p)/p · σ²`, the
//! variance whose root, four times, is the fidelity suite's bound. The
//! standard error is `√V̂`: a 95 % interval is about `±2` of them.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::sync::Arc;

use super::labels::{TaskLabels, ThreadMeta};
use super::recorder::{Aggregate, SampleKey, SampleSpan};
use super::spread::{ht_count_se, ht_se, ratio_se, Sums};
use super::stack::Stack;
use super::stats::Totals;
use super::{EventKind, Mode};
use crate::accuracy::{Figure, LockAccuracy};
use crate::site::SiteKey;
use crate::util::fxhash::FxHashMap;

/// One sample as it will be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WeightedSample {
    pub(crate) kind: EventKind,
    pub(crate) site: SiteKey,
    pub(crate) mode: Mode,
    /// `None` for the `<unsampled>` remainder.
    pub(crate) thread: Option<Arc<ThreadMeta>>,
    /// The async task, for acquisitions by async locks.
    pub(crate) task: Option<TaskLabels>,
    /// The span the events happened in.
    pub(crate) span: Option<SampleSpan>,
    pub(crate) stack: Option<Stack>,
    pub(crate) count: u64,
    pub(crate) total_ns: u64,
    /// For [`EventKind::Caused`], the waiter's stack id; else 0.
    pub(crate) peer: u32,
}

/// Applies the estimator to one period.
pub(crate) fn weigh<S: std::hash::BuildHasher>(
    samples: Vec<(SampleKey, Aggregate)>,
    totals: &HashMap<(SiteKey, Mode), Totals, S>,
    capture_pct: f64,
) -> Vec<WeightedSample> {
    if capture_pct <= 0.0 {
        // Capture 0 records nothing, exact totals included.
        return Vec::new();
    }
    let inverse_p = if capture_pct > 0.0 {
        100.0 / capture_pct
    } else {
        0.0
    };
    // Caused wait is charged by sampled waiters only. Scaled as their waits
    // are: where the lock's total wait is exact, by that total over the
    // sampled waiters' own waits (the sampled waiters' charged share of
    // their waits, applied to every wait: a ratio estimate, which does not
    // vary with how many happened to be sampled); else by `100 /
    // capture_pct` (the shift is already in the aggregate). Exact at 100 %.
    let (caused, samples): (Vec<_>, Vec<_>) = samples
        .into_iter()
        .partition(|(k, _)| k.kind == EventKind::Caused);
    let mut sampled_waits: FxHashMap<(SiteKey, Mode), u64> = FxHashMap::default();
    if !caused.is_empty() {
        for (k, a) in samples.iter().filter(|(k, _)| k.kind == EventKind::Acquire) {
            let w = sampled_waits.entry((k.site, k.mode)).or_default();
            *w = w.saturating_add(a.total_ns);
        }
    }
    let caused_scale = |site: SiteKey, mode: Mode| -> f64 {
        let exact = totals.get(&(site, mode)).and_then(|t| t.wait_ns);
        match (exact, sampled_waits.get(&(site, mode))) {
            (Some(total), Some(&sampled)) if sampled > 0 && capture_pct < 100.0 => {
                total as f64 / sampled as f64
            }
            _ => inverse_p,
        }
    };
    // Grouped by (site, mode, kind) in one sort: each site is hashed once
    // to a small id and its place in the output order found by sorting the
    // distinct sites, so the samples sort on integers and a group is a
    // slice. A BTreeMap keyed by the site's text, with a Vec per group, was
    // most of a flush of 16,000 names (string compares in every node).
    let mut site_ids: FxHashMap<SiteKey, u32> = FxHashMap::default();
    let mut sites: Vec<SiteKey> = Vec::new();
    let mut id_of = |site: SiteKey| {
        *site_ids.entry(site).or_insert_with(|| {
            sites.push(site);
            sites.len() as u32 - 1
        })
    };
    let ids: Vec<u32> = samples.iter().map(|(k, _)| id_of(k.site)).collect();
    // Locks with exact totals but no sample of a kind still need a group.
    let mut exact: FxHashMap<(u32, Mode), Totals> = FxHashMap::default();
    for (&(site, mode), t) in totals.iter() {
        exact.insert((id_of(site), mode), *t);
    }
    let mut order: Vec<u32> = (0..sites.len() as u32).collect();
    order.sort_unstable_by(|&a, &b| site_order(&sites[a as usize], &sites[b as usize]));
    let mut rank = vec![0u32; sites.len()];
    for (r, &id) in order.iter().enumerate() {
        rank[id as usize] = r as u32;
    }
    let mut groups: Vec<(u32, Mode, EventKind)> = samples
        .iter()
        .zip(&ids)
        .map(|((k, _), &id)| (rank[id as usize], k.mode, k.kind))
        .chain(exact.keys().flat_map(|&(id, mode)| {
            [EventKind::Acquire, EventKind::Release].map(|kind| (rank[id as usize], mode, kind))
        }))
        .collect();
    groups.sort_unstable();
    groups.dedup();
    // Within a group, deterministic order: heaviest first, then by thread
    // id. Sorted as small keys with the sample's index, not the samples.
    let mut sorted: Vec<(MemberOrder, u32)> = samples
        .iter()
        .zip(&ids)
        .enumerate()
        .map(|(i, ((k, a), &id))| {
            let key = (rank[id as usize], k.mode, k.kind, Reverse(a.events), k.thread.id);
            (key, i as u32)
        })
        .collect();
    sorted.sort_unstable_by(|(ka, ia), (kb, ib)| {
        ka.cmp(kb).then_with(|| {
            let (a, b) = (&samples[*ia as usize].0, &samples[*ib as usize].0);
            a.stack
                .ips
                .cmp(&b.stack.ips)
                .then(a.task.cmp(&b.task))
                .then_with(|| a.span.cmp(&b.span))
        })
    });
    let mut samples: Vec<Option<(SampleKey, Aggregate)>> = samples.into_iter().map(Some).collect();
    let keyed = sorted
        .into_iter()
        .filter_map(|(_, i)| Some((ids[i as usize], samples[i as usize].take()?)));

    let mut out = Vec::with_capacity(ids.len() + exact.len());
    let mut rest = keyed.peekable();
    let mut counts = Vec::new();
    let mut times = Vec::new();
    let mut members: Vec<(SampleKey, Aggregate)> = Vec::new();
    for (r, mode, kind) in groups {
        let id = order[r as usize];
        let site = sites[id as usize];
        members.clear();
        while let Some((_, m)) = rest.next_if(|(i, (k, _))| *i == id && k.mode == mode && k.kind == kind) {
            members.push(m);
        }
        let exact = exact.get(&(id, mode)).copied();
        let sampled_events: u64 = members.iter().map(|(_, a)| a.weight).fold(0, u64::saturating_add);
        let sampled_ns: u64 = members
            .iter()
            .map(|(_, a)| a.total_ns)
            .fold(0, u64::saturating_add);

        let count = match exact.and_then(|t| t.acquired) {
            Some(n) => n,
            None => (sampled_events as f64 * inverse_p).round() as u64,
        };
        let total_ns = match (kind, exact.and_then(|t| t.wait_ns)) {
            (EventKind::Acquire, Some(wait_ns)) => wait_ns,
            _ if sampled_events == 0 => 0,
            // Scaled as the count is: by `N / n`, or by `100 / capture_pct`.
            _ => (sampled_ns as f64 * count as f64 / sampled_events as f64).round() as u64,
        };

        if members.is_empty() || (sampled_ns == 0 && total_ns > 0) {
            // Nothing sampled to split the exact totals over (or no sampled
            // acquisition of this lock waited though some did).
            let residual_count = if members.is_empty() { count } else { 0 };
            if residual_count > 0 || total_ns > 0 {
                out.push(WeightedSample {
                    kind,
                    site,
                    mode,
                    thread: None,
                    task: None,
                    span: None,
                    stack: None,
                    count: residual_count,
                    total_ns,
                    peer: 0,
                });
            }
            if members.is_empty() {
                continue;
            }
        }

        apportion_into(count, members.iter().map(|(_, a)| a.weight), &mut counts);
        if sampled_ns > 0 {
            apportion_into(total_ns, members.iter().map(|(_, a)| a.total_ns), &mut times);
        } else {
            times.clear();
            times.resize(members.len(), 0);
        }
        for (((key, _), &count), &total_ns) in members.drain(..).zip(&counts).zip(&times) {
            out.push(WeightedSample {
                kind,
                site,
                mode,
                thread: Some(key.thread),
                task: key.task,
                span: key.span,
                stack: Some(key.stack),
                count,
                total_ns,
                peer: 0,
            });
        }
    }
    let mut caused: Vec<WeightedSample> = caused
        .into_iter()
        .map(|(k, a)| WeightedSample {
            kind: EventKind::Caused,
            site: k.site,
            mode: k.mode,
            thread: Some(k.thread),
            task: k.task,
            span: k.span,
            stack: Some(k.stack),
            count: (a.weight as f64 * inverse_p).round() as u64,
            total_ns: (a.total_ns as f64 * caused_scale(k.site, k.mode)).round() as u64,
            peer: k.peer,
        })
        .collect();
    // Deterministic order: by lock, heaviest first.
    caused.sort_by(|a, b| {
        site_order(&a.site, &b.site)
            .then(b.total_ns.cmp(&a.total_ns))
            .then_with(|| {
                a.stack
                    .as_ref()
                    .map(|s| &s.ips)
                    .cmp(&b.stack.as_ref().map(|s| &s.ips))
            })
            .then(a.peer.cmp(&b.peer))
            .then_with(|| a.span.cmp(&b.span))
    });
    out.extend(caused);
    out
}

/// What the profile states of each lock name and mode's totals (see
/// "Standard errors" above), from the same aggregates and totals that
/// [`weigh`] is given, before it takes them.
pub(crate) fn accuracy<S: std::hash::BuildHasher>(
    samples: &[(SampleKey, Aggregate)],
    totals: &HashMap<(SiteKey, Mode), Totals, S>,
    capture_pct: f64,
) -> Vec<LockAccuracy> {
    if capture_pct <= 0.0 {
        return Vec::new();
    }
    let inverse_p = 100.0 / capture_pct;
    // Per lock name and mode: the acquisitions' sums, then the releases'.
    let mut groups: FxHashMap<(SiteKey, Mode), [Sums; 2]> = FxHashMap::default();
    for (key, agg) in samples {
        let kind = match key.kind {
            EventKind::Acquire => 0,
            EventKind::Release => 1,
            // Not a figure the accuracy comment states.
            EventKind::Caused => continue,
        };
        let sums = &mut groups.entry((key.site, key.mode)).or_default()[kind];
        sums.w += agg.weight as f64;
        sums.wv += agg.total_ns as f64;
        sums.spread.merge(&agg.spread);
    }
    for &(site, mode) in totals.keys() {
        groups.entry((site, mode)).or_default();
    }
    let mut groups: Vec<((SiteKey, Mode), [Sums; 2])> = groups.into_iter().collect();
    // Deterministic output: by site, then mode.
    groups.sort_by(|((a, am), _), ((b, bm), _)| {
        (a.file, a.line, a.column, a.name, am).cmp(&(b.file, b.line, b.column, b.name, bm))
    });
    let estimated = |standard_error: f64| Figure::Estimated { standard_error };
    groups
        .into_iter()
        .filter_map(|((site, mode), [acquired, released])| {
            let exact = totals.get(&(site, mode)).copied();
            let n = exact.and_then(|t| t.acquired);
            if n == Some(0) && acquired.w == 0.0 && released.w == 0.0 {
                // Nothing of it in this profile.
                return None;
            }
            let count = |s: &Sums| match n {
                Some(_) => Figure::Exact,
                None => estimated(ht_count_se(inverse_p, s)),
            };
            let total = |s: &Sums| match n {
                _ if s.w == 0.0 => Figure::Unsampled,
                Some(n) if s.are_all_of(n, capture_pct) => Figure::Exact,
                Some(n) => estimated(ratio_se(n, s)),
                None => estimated(ht_se(inverse_p, s)),
            };
            Some(LockAccuracy {
                lock: site.label(),
                mode: mode.label().map(str::to_owned),
                acquire: count(&acquired),
                wait: match exact.and_then(|t| t.wait_ns) {
                    Some(_) => Figure::Exact,
                    None => total(&acquired),
                },
                release: count(&released),
                hold: total(&released),
                contended: n.and(exact.map(|t| t.contended)),
            })
        })
        .collect()
}

/// [`apportion`] into `parts`, reused from group to group; a group of one
/// (every lock name with one stack and thread) allocates nothing.
fn apportion_into(total: u64, mut weights: impl ExactSizeIterator<Item = u64>, parts: &mut Vec<u64>) {
    parts.clear();
    if weights.len() == 1 {
        let w = weights.next().unwrap_or(0);
        parts.push(if w == 0 { 0 } else { total });
        return;
    }
    parts.extend(apportion(total, weights));
}

/// Splits `total` in proportion to `weights`, by largest remainder, so the
/// parts add up to exactly `total` (all zero if the weights are).
pub(crate) fn apportion(total: u64, weights: impl Iterator<Item = u64>) -> Vec<u64> {
    let weights: Vec<u64> = weights.collect();
    let sum: u128 = weights.iter().map(|&w| w as u128).sum();
    if sum == 0 {
        return vec![0; weights.len()];
    }
    let mut parts = Vec::with_capacity(weights.len());
    let mut remainders = Vec::with_capacity(weights.len());
    let mut given: u128 = 0;
    for (i, &w) in weights.iter().enumerate() {
        let exact = total as u128 * w as u128;
        parts.push((exact / sum) as u64);
        remainders.push((exact % sum, i));
        given += exact / sum;
    }
    let mut left = total as u128 - given;
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, i) in remainders {
        if left == 0 {
            break;
        }
        parts[i] += 1;
        left -= 1;
    }
    parts
}

/// A sample's place in the output: its site's rank, mode and kind (its
/// group), then heaviest first, then by thread id.
type MemberOrder = (u32, Mode, EventKind, Reverse<u64>, u64);

/// The output order of sites: by file, line, column and name.
fn site_order(a: &SiteKey, b: &SiteKey) -> std::cmp::Ordering {
    // The same file's text is usually one string: no compare then.
    let file = if std::ptr::eq(a.file, b.file) {
        std::cmp::Ordering::Equal
    } else {
        a.file.cmp(b.file)
    };
    file.then((a.line, a.column, a.name).cmp(&(b.line, b.column, b.name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apportion_adds_up_exactly() {
        assert_eq!(apportion(10, [1, 1, 1].into_iter()), vec![4, 3, 3]);
        assert_eq!(apportion(0, [5, 1].into_iter()), vec![0, 0]);
        assert_eq!(apportion(7, [0, 0].into_iter()), vec![0, 0]);
        let parts = apportion(1_000_003, [3, 7, 11, 13].into_iter());
        assert_eq!(parts.iter().sum::<u64>(), 1_000_003);
    }

    fn key(kind: EventKind, thread: u64, ip: usize) -> SampleKey {
        SampleKey {
            kind,
            site: SiteKey {
                file: "a.rs",
                line: 1,
                column: 1,
                name: Some("l"),
            },
            mode: Mode::Exclusive,
            thread: Arc::new(ThreadMeta {
                id: thread,
                native_id: thread,
                name: String::new(),
            }),
            task: None,
            span: None,
            stack: Stack::new(&[ip], 0),
            peer: 0,
        }
    }

    /// One lock: 3 sampled acquisitions on one stack (300 ns in all), 1 on
    /// another (100 ns).
    fn four_sampled_acquisitions() -> Vec<(SampleKey, Aggregate)> {
        [(1, 3, 300), (2, 1, 100)]
            .into_iter()
            .map(|(ip, events, total_ns)| {
                (
                    key(EventKind::Acquire, 1, ip),
                    Aggregate {
                        events,
                        weight: events,
                        total_ns,
                        spread: Default::default(),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn exact_totals_are_split_by_sampled_shares() {
        let site = key(EventKind::Acquire, 1, 1).site;
        let samples = four_sampled_acquisitions();
        let mut totals = HashMap::new();
        totals.insert(
            (site, Mode::Exclusive),
            Totals {
                acquired: Some(400),
                contended: 10,
                wait_ns: Some(8000),
            },
        );
        let out = weigh(samples, &totals, 1.0);
        let acquires: Vec<_> = out.iter().filter(|s| s.kind == EventKind::Acquire).collect();
        assert_eq!(acquires.iter().map(|s| s.count).sum::<u64>(), 400);
        assert_eq!(acquires[0].count, 300);
        assert_eq!(acquires[0].total_ns, 6000);
        assert_eq!(acquires[1].total_ns, 2000);
        // No release was sampled: the exact count goes to <unsampled>.
        let releases: Vec<_> = out.iter().filter(|s| s.kind == EventKind::Release).collect();
        assert_eq!(releases.len(), 1);
        assert!(releases[0].stack.is_none());
        assert_eq!(releases[0].count, 400);
    }

    #[test]
    fn without_an_exact_wait_the_sampled_wait_is_scaled_like_the_count() {
        let samples = four_sampled_acquisitions();
        let mut totals = HashMap::new();
        totals.insert(
            (key(EventKind::Acquire, 1, 1).site, Mode::Exclusive),
            Totals {
                acquired: Some(400),
                contended: 0,
                wait_ns: None,
            },
        );
        let out = weigh(samples, &totals, 1.0);
        let acquires: Vec<_> = out.iter().filter(|s| s.kind == EventKind::Acquire).collect();
        // 4 sampled acquisitions stand for 400: each counts 100 times.
        assert_eq!((acquires[0].count, acquires[0].total_ns), (300, 30_000));
        assert_eq!((acquires[1].count, acquires[1].total_ns), (100, 10_000));
    }

    /// `events` sampled (weight 1) of `kind`, each of value `v`.
    fn spread_of(kind: EventKind, ip: usize, events: u64, v: u64) -> (SampleKey, Aggregate) {
        let mut agg = Aggregate::default();
        for _ in 0..events {
            agg.events += 1;
            agg.weight += 1;
            agg.total_ns += v;
            agg.spread.add(1, v);
        }
        (key(kind, 1, ip), agg)
    }

    fn totals_of(acquired: u64, contended: u64, wait_ns: Option<u64>) -> HashMap<(SiteKey, Mode), Totals> {
        let site = key(EventKind::Acquire, 1, 1).site;
        HashMap::from([(
            (site, Mode::Exclusive),
            Totals {
                acquired: Some(acquired),
                contended,
                wait_ns,
            },
        )])
    }

    #[test]
    fn every_event_recorded_is_exact() {
        let samples = vec![
            spread_of(EventKind::Acquire, 1, 3, 10),
            spread_of(EventKind::Release, 1, 2, 100),
            spread_of(EventKind::Release, 2, 1, 700),
        ];
        let out = accuracy(&samples, &totals_of(3, 1, Some(30)), 100.0);
        assert_eq!(
            out,
            vec![LockAccuracy {
                lock: "a.rs:1:l".to_owned(),
                mode: None,
                acquire: Figure::Exact,
                wait: Figure::Exact,
                release: Figure::Exact,
                hold: Figure::Exact,
                contended: Some(1),
            }]
        );
        // One release lost on a full queue: the hold is estimated.
        let out = accuracy(&samples, &totals_of(4, 1, Some(30)), 100.0);
        assert!(matches!(out[0].hold, Figure::Estimated { standard_error } if standard_error > 0.0));
    }

    #[test]
    fn sampled_holds_are_estimated_with_the_ratio_standard_error() {
        // 4 of 400 releases sampled, holds 100, 100, 100, 700 (mean 250,
        // Σ(v−250)² = 270,000): c = 100, variance 100·99·270,000.
        let samples = vec![
            spread_of(EventKind::Acquire, 1, 4, 0),
            spread_of(EventKind::Release, 1, 3, 100),
            spread_of(EventKind::Release, 2, 1, 700),
        ];
        let out = accuracy(&samples, &totals_of(400, 0, None), 1.0);
        assert_eq!((out[0].acquire, out[0].release), (Figure::Exact, Figure::Exact));
        assert_eq!(out[0].wait, Figure::Estimated { standard_error: 0.0 });
        let expected = (100.0f64 * 99.0 * 270_000.0).sqrt();
        match out[0].hold {
            Figure::Estimated { standard_error } => assert!((standard_error - expected).abs() < 1e-6),
            f => panic!("{f:?}"),
        }
        assert_eq!(out[0].contended, Some(0));
        // A lock with acquisitions but none sampled.
        let out = accuracy(&[], &totals_of(400, 2, Some(50)), 1.0);
        assert_eq!((out[0].wait, out[0].hold), (Figure::Exact, Figure::Unsampled));
        // Nothing at all: not mentioned.
        assert!(accuracy(&[], &totals_of(0, 0, None), 1.0).is_empty());
    }

    #[test]
    fn without_exact_totals_each_event_stands_for_one_over_p() {
        let samples = vec![(
            key(EventKind::Acquire, 1, 1),
            Aggregate {
                events: 2,
                weight: 2,
                total_ns: 50,
                spread: Default::default(),
            },
        )];
        let out = weigh(samples, &HashMap::new(), 10.0);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].count, 20);
        assert_eq!(out[0].total_ns, 500);
    }

    #[test]
    fn output_is_ordered_by_site_mode_and_kind_then_heaviest_first() {
        let at = |name: &'static str, kind, thread, events| {
            let mut k = key(kind, thread, thread as usize);
            k.site.name = Some(name);
            (
                k,
                Aggregate {
                    events,
                    weight: events,
                    total_ns: events,
                    spread: Default::default(),
                },
            )
        };
        let samples = vec![
            at("b", EventKind::Release, 1, 1),
            at("b", EventKind::Acquire, 2, 1),
            at("a", EventKind::Acquire, 3, 1),
            at("b", EventKind::Acquire, 1, 5),
            at("a", EventKind::Acquire, 1, 1),
        ];
        let order: Vec<(&str, EventKind, u64)> = weigh(samples, &HashMap::new(), 100.0)
            .iter()
            .map(|s| {
                (
                    s.site.name.unwrap_or(""),
                    s.kind,
                    s.thread.as_ref().map_or(0, |t| t.id),
                )
            })
            .collect();
        assert_eq!(
            order,
            [
                ("a", EventKind::Acquire, 1),
                ("a", EventKind::Acquire, 3),
                ("b", EventKind::Acquire, 1),
                ("b", EventKind::Acquire, 2),
                ("b", EventKind::Release, 1),
            ]
        );
    }
}
