//! Tasks on a multi-thread runtime holding an async mutex across `.await`s:
//! the profile matches what the tasks timed themselves.

#[path = "../examples/common/fidelity.rs"]
mod fidelity;

use fidelity::{assert_sampled_within_error, assert_within_sampling_error, by_name, measure};

const WORKLOAD: &str = "async mutex across .await";

#[test]
fn at_default_capture_estimates_are_within_sampling_error() {
    let dir = tempfile::tempdir().unwrap();
    assert_sampled_within_error(
        || measure(by_name(WORKLOAD), lockprof::DEFAULT_CAPTURE_PCT, 1.0, dir.path()),
        0.0,
    );
}

#[test]
fn at_full_capture_totals_are_within_three_percent() {
    let dir = tempfile::tempdir().unwrap();
    let outcome = measure(by_name(WORKLOAD), 100.0, 0.5, dir.path());
    assert_within_sampling_error(&outcome, 0.03);
}
