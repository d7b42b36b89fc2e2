//! Read-write locks, a condvar queue, a re-entrant mutex, one lock taken from
//! two call sites, and locks created per request: the profile's counts, waits,
//! holds and call-site split match what each program timed itself.

#[path = "../examples/common/fidelity.rs"]
mod fidelity;

use fidelity::{assert_sampled_within_error, assert_within_sampling_error, by_name, measure};

const SHAPES: [&str; 5] = [
    "rwlock, 4 readers 2 writers",
    "condvar queue, 2+2 threads",
    "re-entrant mutex, 4 threads",
    "two call sites 1:3, 4 threads",
    "locks per request, 4 threads",
];

#[test]
fn at_default_capture_estimates_are_within_sampling_error() {
    let dir = tempfile::tempdir().unwrap();
    for name in SHAPES {
        assert_sampled_within_error(
            || measure(by_name(name), lockprof::DEFAULT_CAPTURE_PCT, 0.5, dir.path()),
            0.0,
        );
    }
}

#[test]
fn at_full_capture_totals_are_within_three_percent() {
    let dir = tempfile::tempdir().unwrap();
    for name in SHAPES {
        assert_within_sampling_error(&measure(by_name(name), 100.0, 0.2, dir.path()), 0.03);
    }
}
