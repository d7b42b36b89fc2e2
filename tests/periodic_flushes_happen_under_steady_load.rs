//! The flush interval holds while events keep arriving: a steady stream of
//! sampled events must not starve the periodic flush (it once did, so that
//! the only profile was written at stop).

mod common;

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use common::{profiles_in, serial};
use lockprof::{named, ProfiledMutex, Profiler};

#[test]
fn profiles_are_written_every_interval_while_events_stream_in() {
    let _turn = serial();
    let dir = tempfile::tempdir().unwrap();
    named!(let busy = ProfiledMutex::new(0u64));
    let handle = Profiler::builder()
        .capture_pct(100.0)
        .flush_interval(Duration::from_millis(300))
        .output_pprof(dir.path().join("steady"))
        .start()
        .unwrap();
    // The first flush loads debug info to symbolize: slow in a debug build.
    *busy.lock().unwrap() += 1;
    handle.flush();
    let before = profiles_in(dir.path()).len();
    let stop = AtomicBool::new(false);
    let written_while_running = std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                while !stop.load(Relaxed) {
                    *busy.lock().unwrap() += 1;
                }
            });
        }
        let end = Instant::now() + Duration::from_secs(3);
        while Instant::now() < end {
            std::thread::sleep(Duration::from_millis(50));
        }
        let n = profiles_in(dir.path()).len() - before;
        stop.store(true, Relaxed);
        n
    });
    let stats = handle.stop();
    assert!(stats.events_recorded > 0);
    // 10 intervals in 3 s; a slow machine may slip a few.
    assert!(
        written_while_running >= 4,
        "{written_while_running} profiles in 3 s at a 300 ms interval"
    );
}
