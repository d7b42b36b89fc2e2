//! What the benchmarks in `benches/` measure of the recording core below
//! the public API, and a period for the flush benchmark to encode; reached
//! through the hidden `lockprof::__bench`, never documented.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::labels::ThreadMeta;
use super::recorder::{Aggregate, SampleKey};
use super::session::Period;
use super::stack::Stack;
use super::stats::Totals;
use super::{guarded, recorder, stack, EventKind, Mode};
use crate::site::{LockSite, SiteKey};
use crate::util::fxhash::FxHashMap;

/// One sampled event as a sampled acquisition makes it: capture the caller's
/// stack, then hand it to the running profiler's recorder. Returns whether
/// the event was queued (false when no profiler runs or its queue is full).
#[inline(never)]
pub fn sampled_event() -> bool {
    let site = LockSite::caller().with_name("bench");
    let mut stack = stack::StackBuf::new();
    if guarded(|| stack::capture_into(recorder::max_frames(), &mut stack)).is_none() {
        return false;
    }
    guarded(|| recorder::send(EventKind::Acquire, &site, Mode::Exclusive, 0, 0, stack.frames()))
        .unwrap_or(false)
}

/// The same stack captured twice in one function: by the eh_frame unwinder
/// (`None` where it is not available) and by `backtrace::trace`, each with up
/// to `limit` frames, leaf first. The leaf frames differ (each unwinder's
/// own); from the caller of this function on they should be the same.
#[inline(never)]
pub fn eh_frame_and_backtrace(limit: usize) -> (Option<Vec<usize>>, Vec<usize>) {
    stack::prepare_eh_frame();
    let ours = stack::walk_eh_frame(limit).map(|s| s.ips.to_vec());
    let bt = stack::capture_with_backtrace(limit).ips.to_vec();
    std::hint::black_box((ours, bt))
}

/// How many eh_frame walks so far ended at a frame they could not unwind.
pub fn eh_frame_truncated_walks() -> u64 {
    stack::truncated_walks()
}

/// A period with `stacks` distinct stacks of `depth` frames, each an acquire
/// and a release, over 16 locks and 4 threads, sampled at 1 %: what the
/// profiler thread flushes, on synthetic but real-code addresses.
pub(crate) fn period(stacks: usize, depth: usize) -> Period {
    // Addresses inside real code (flate2's and its neighbours'), so that
    // symbolization resolves real functions and lines.
    let base = flate2::Compression::fast as *const () as usize;
    let pool: Vec<usize> = (0..4096).map(|i| base + 1 + i * 61).collect();
    let threads: Vec<Arc<ThreadMeta>> = (0..4).map(|_| ThreadMeta::current()).collect();
    let sites: Vec<SiteKey> = (0..16)
        .map(|i| SiteKey {
            file: "bench.rs",
            line: 100 + i,
            column: 1,
            name: Some("bench_lock"),
        })
        .collect();
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng as usize
    };
    let mut samples = Vec::with_capacity(stacks * 2);
    let mut totals: FxHashMap<(SiteKey, Mode), Totals> = FxHashMap::default();
    for k in 0..stacks {
        // Distinct by construction: the first two frames encode `k`.
        let mut ips = vec![pool[k % pool.len()], pool[(k / pool.len()) % pool.len()]];
        ips.extend((2..depth).map(|_| pool[next() % pool.len()]));
        let stack = Stack::new(&ips, 0);
        let site = sites[k % sites.len()];
        let thread = Arc::clone(&threads[k % threads.len()]);
        for kind in [EventKind::Acquire, EventKind::Release] {
            let key = SampleKey {
                kind,
                site,
                mode: Mode::Exclusive,
                thread: Arc::clone(&thread),
                task: None,
                span: None,
                stack: stack.clone(),
                peer: 0,
            };
            let events = 1 + (next() % 5) as u64;
            let agg = Aggregate {
                events,
                weight: events,
                total_ns: 1000 + (next() % 100_000) as u64,
                spread: Default::default(),
            };
            samples.push((key, agg));
        }
        let t = totals.entry((site, Mode::Exclusive)).or_default();
        *t.acquired.get_or_insert(0) += 100;
    }
    let start = SystemTime::UNIX_EPOCH;
    let duration = Duration::from_secs(60);
    Period {
        start,
        end: start + duration,
        duration,
        samples,
        totals,
        recorded: 0,
        dropped: 0,
        internal_panics: 0,
        capture_pct: 1.0,
        max_frames: 64,
        truncated_walks: 0,
        uncounted: 0,
        endpoint_counts: Vec::new(),
    }
}
