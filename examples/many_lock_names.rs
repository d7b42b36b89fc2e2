//! Time of one flush with many locks named at run time at one line
//! (`req-0000001`, `req-0000002`, …: one file, line, column and name length),
//! each locked once at 100 % capture.
//!
//! ```text
//! cargo run --release --example many_lock_names -- 16000   # names
//! ```
//!
//! Before lock sites were hashed by their text, 1,000 names took 119 ms,
//! 8,000 2.0 s, 16,000 8.1 s, and over 20,000 `stop()` never returned. After
//! (2026-12-01, this 2-core VM shared with other builds, load average 10):
//! 1,000 29 ms, 8,000 240 ms, 16,000 330–560 ms, 32,000 960 ms.

use std::time::{Duration, Instant};

use lockprof::{EncodedProfile, Export, ExportError, ProfiledMutex, Profiler};

struct Discard;

impl Export for Discard {
    fn export(&mut self, _profile: &EncodedProfile) -> Result<(), ExportError> {
        Ok(())
    }
    fn describe(&self) -> String {
        "discarded".into()
    }
}

fn main() {
    let names: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("a number of names"))
        .unwrap_or(16_000);
    let handle = Profiler::builder()
        .capture_pct(100.0)
        .flush_interval(Duration::from_secs(3600))
        .export(Discard)
        .start()
        .expect("start the profiler");
    let locks: Vec<ProfiledMutex<u32>> = (0..names)
        .map(|i| ProfiledMutex::new(0).named(Box::leak(format!("req-{i:07}").into_boxed_str())))
        .collect();
    for lock in &locks {
        *lock.lock().unwrap() += 1;
    }
    // The first flush loads debug info: time the second.
    handle.flush();
    for lock in &locks {
        *lock.lock().unwrap() += 1;
    }
    let started = Instant::now();
    handle.flush();
    let flush = started.elapsed();
    let started = Instant::now();
    handle.stop();
    println!(
        "{names} names: flush {:.1} ms, stop {:.1} ms",
        flush.as_secs_f64() * 1e3,
        started.elapsed().as_secs_f64() * 1e3
    );
}
