//! Test-only fault injection (feature `fault-injection`): makes the
//! profiler's own code on user threads panic, to prove such panics are caught.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

static PANIC_IN_PROFILER: AtomicBool = AtomicBool::new(false);

/// Turns injected panics on or off.
pub fn inject_profiler_panics(on: bool) {
    PANIC_IN_PROFILER.store(on, Relaxed);
}

pub(crate) fn maybe_panic() {
    if PANIC_IN_PROFILER.load(Relaxed) {
        panic!("lockprof: injected fault");
    }
}
