//! Many short critical sections on one lock at 2, 8 and 32 threads: the
//! profile matches what the threads timed themselves.

#[path = "../examples/common/fidelity.rs"]
mod fidelity;

use fidelity::{assert_sampled_within_error, assert_within_sampling_error, by_name, measure};

fn check(threads: usize, capture_pct: f64, scale: f64, floor: f64) {
    let dir = tempfile::tempdir().unwrap();
    let name = format!("short sections, {threads} threads");
    let run = || measure(by_name(&name), capture_pct, scale, dir.path());
    if capture_pct < 100.0 {
        assert_sampled_within_error(run, floor);
    } else {
        assert_within_sampling_error(&run(), floor);
    }
}

#[test]
fn at_default_capture_estimates_are_within_sampling_error() {
    for threads in [2, 8, 32] {
        check(threads, lockprof::DEFAULT_CAPTURE_PCT, 0.5, 0.0);
    }
}

#[test]
fn at_full_capture_totals_are_within_three_percent() {
    for threads in [2, 8, 32] {
        check(threads, 100.0, 0.1, 0.03);
    }
}
