//! Shared by the benchmarks: a profiler that discards its profiles, and the
//! settings that keep a full run of the benches to a few minutes.
#![allow(dead_code)]

use std::time::Duration;

use criterion::Criterion;
use lockprof::{EncodedProfile, Export, ExportError, Profiler, ProfilerHandle};

/// Profiles go nowhere: the benches measure recording, not I/O.
pub struct Discard;

impl Export for Discard {
    fn export(&mut self, _profile: &EncodedProfile) -> Result<(), ExportError> {
        Ok(())
    }
    fn describe(&self) -> String {
        "discarded".into()
    }
}

/// Starts a profiler at `capture_pct`, discarding its output. Only one runs
/// per process: stop it before starting the next.
pub fn profiler(capture_pct: f64) -> ProfilerHandle {
    Profiler::builder()
        .capture_pct(capture_pct)
        .queue_capacity(1 << 16)
        .export(Discard)
        .start()
        .expect("no other profiler runs in this process")
}

/// Stops the profiler and reports what it saw on stderr, so that a run
/// that dropped events (making the figure optimistic) is visible.
pub fn stop(p: ProfilerHandle, what: &str) {
    let stats = p.stop();
    if stats.events_recorded + stats.events_dropped > 0 {
        eprintln!(
            "  [{what}: {} events recorded, {} dropped]",
            stats.events_recorded, stats.events_dropped
        );
    }
}

/// Short runs: ratios within a group matter, not the last digit.
pub fn criterion() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

/// Calls `f` from `depth` frames below the caller.
#[inline(never)]
pub fn at_depth<R>(depth: usize, f: &mut dyn FnMut() -> R) -> R {
    if depth == 0 {
        return f();
    }
    let r = at_depth(depth - 1, f);
    std::hint::black_box(r)
}
