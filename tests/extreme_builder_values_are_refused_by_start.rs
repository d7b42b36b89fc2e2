//! Builder values outside their ranges are refused by `start()`, naming the
//! setting and the value: never an abort (`queue_capacity(1 << 40)` used to
//! fail allocating), a panic (`1 << 60`), a ring wrapped to size 0
//! (`usize::MAX`) or an `Instant` overflow on the profiler thread
//! (`flush_interval(Duration::MAX)`). The largest values allowed start and
//! stop.

mod common;

use std::time::Duration;

use common::serial;
use lockprof::{named, ProfiledMutex, Profiler, StartError};

named!(static WORK: ProfiledMutex<u64> = ProfiledMutex::new(0));

#[test]
fn out_of_range_values_are_errors_naming_setting_and_value() {
    let _turn = serial();
    let dir = tempfile::tempdir().unwrap();
    let builder = || Profiler::builder().output_pprof(dir.path().join("p"));
    let refused = |result: Result<lockprof::ProfilerHandle, StartError>| match result {
        Err(StartError::Config(e)) => (e.name, e.value),
        Err(e) => panic!("unexpected error {e}"),
        Ok(handle) => {
            handle.stop();
            panic!("started")
        }
    };
    for (capacity, text) in [
        (1usize << 40, "1099511627776"),
        (1 << 60, "1152921504606846976"),
        (usize::MAX, "18446744073709551615"),
        (0, "0"),
    ] {
        assert_eq!(
            refused(builder().queue_capacity(capacity).start()),
            ("queue_capacity".to_owned(), text.to_owned())
        );
    }
    for (interval, text) in [
        (Duration::MAX, "18446744073709551615.999999999s"),
        (Duration::from_nanos(1), "1ns"),
        (Duration::from_secs(86_401), "86401s"),
    ] {
        assert_eq!(
            refused(builder().flush_interval(interval).start()),
            ("flush_interval".to_owned(), text.to_owned())
        );
    }
    #[cfg(feature = "datadog")]
    assert_eq!(
        refused(builder().api_timeout(Duration::MAX).start()),
        (
            "api_timeout".to_owned(),
            "18446744073709551615.999999999s".to_owned()
        )
    );
    assert_eq!(
        refused(builder().capture_pct(1e-20).start()),
        ("capture_pct".to_owned(), "1e-20".to_owned())
    );
    // The largest values allowed start, record, and stop.
    let handle = builder()
        .queue_capacity(1 << 20)
        .flush_interval(Duration::from_secs(86_400));
    #[cfg(feature = "datadog")]
    let handle = handle.api_timeout(Duration::from_secs(3600));
    let handle = handle.start().unwrap();
    *WORK.lock().unwrap() += 1;
    handle.stop();
}
