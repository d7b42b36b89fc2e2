//! When every flush takes longer than the flush interval, `flush()` and
//! `stop()` still return: the profiler thread reads its requests between any
//! two flushes, and skips the ticks it missed instead of flushing back to
//! back. (It used to re-flush while overdue without ever reading them:
//! `stop()` waited forever.) Extreme builder values are refused by `start()`
//! naming the setting and the value, never an abort, a panic or an overflow.

mod common;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use common::serial;
use lockprof::{named, EncodedProfile, Export, ExportError, ProfiledMutex, Profiler};

named!(static WORK: ProfiledMutex<u64> = ProfiledMutex::new(0));

/// An exporter three times slower than the shortest interval.
struct Slow(Arc<AtomicU64>);

impl Export for Slow {
    fn export(&mut self, _profile: &EncodedProfile) -> Result<(), ExportError> {
        std::thread::sleep(Duration::from_millis(300));
        self.0.fetch_add(1, Relaxed);
        Ok(())
    }
    fn describe(&self) -> String {
        "slow".into()
    }
}

#[test]
fn flush_and_stop_return_when_every_flush_overruns_the_interval() {
    let _turn = serial();
    let exported = Arc::new(AtomicU64::new(0));
    let handle = Profiler::builder()
        .capture_pct(100.0)
        .flush_interval(Duration::from_millis(100))
        .export(Slow(Arc::clone(&exported)))
        .start()
        .unwrap();
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for _ in 0..5 {
            *WORK.lock().unwrap() += 1;
            // Periodic flushes are overdue from here on.
            std::thread::sleep(Duration::from_millis(150));
        }
        handle.flush();
        let _ = done_tx.send("flush");
        let stats = handle.stop();
        let _ = done_tx.send("stop");
        drop(stats);
    });
    for step in ["flush", "stop"] {
        let answered = done_rx.recv_timeout(Duration::from_secs(60));
        assert_eq!(answered, Ok(step), "{step}() did not return within 60 s");
    }
    // Periodic ones, the one asked for, the last one.
    assert!(exported.load(Relaxed) >= 3, "{} exported", exported.load(Relaxed));
}
