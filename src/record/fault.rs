//! Test-only fault injection (feature `fault-injection`): makes the
//! profiler's own code on user threads panic, to prove such panics are
//! caught, and holds its internal locks, to fork while they are held.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

static PANIC_IN_PROFILER: AtomicBool = AtomicBool::new(false);

/// Turns injected panics on or off.
pub fn inject_profiler_panics(on: bool) {
    PANIC_IN_PROFILER.store(on, Relaxed);
}

// The one panic of the library, on purpose: tests (feature
// `fault-injection`) check that profiler code contains its panics.
#[allow(clippy::panic)]
pub(crate) fn maybe_panic() {
    if PANIC_IN_PROFILER.load(Relaxed) {
        panic!("lockprof: injected fault");
    }
}

/// Holds the profiler's internal locks (the recorder's sink and the per-lock
/// stats registry, which its thread takes at every poll and flush) on the
/// calling thread for `duration`, so that a test can fork while another
/// thread holds them.
pub fn hold_profiler_locks(duration: std::time::Duration) {
    let sink = super::recorder::hold_sink();
    let registry = super::stats::hold_registry();
    std::thread::sleep(duration);
    drop((sink, registry));
}
