//! The program (a lock sometimes held across a 200 µs sleep, taken
//! from two call sites 3:1, beside two quiet locks): the profile's counts,
//! waits, holds and call-site split match what the program timed itself,
//! within the sampling error computed from its own timings; the contended
//! lock's total wait is within the issue's ±25 % at the default capture.

#[path = "../examples/common/fidelity.rs"]
mod fidelity;

use fidelity::{
    assert_sampled_within_error, assert_within_sampling_error, by_name, measure, table_line, Measure,
};

const WORKLOAD: &str = "heavy-tailed holds, 4 threads";

#[test]
fn at_default_capture_estimates_are_within_sampling_error() {
    let dir = tempfile::tempdir().unwrap();
    let outcome = assert_sampled_within_error(
        || measure(by_name(WORKLOAD), lockprof::DEFAULT_CAPTURE_PCT, 0.5, dir.path()),
        0.0,
    );
    let wait = outcome
        .rows
        .iter()
        .find(|r| r.lock == "contended" && r.measure == Measure::Wait)
        .unwrap();
    assert!(wait.error().abs() <= 0.25, "{}", table_line(wait));
}

#[test]
fn at_full_capture_totals_are_within_three_percent() {
    let dir = tempfile::tempdir().unwrap();
    let outcome = measure(by_name(WORKLOAD), 100.0, 0.25, dir.path());
    assert_within_sampling_error(&outcome, 0.03);
}
