//! Lock throughput of 8 threads while the profiler uploads to an agent that
//! takes 3 s to answer, against the same workload with a profiler that
//! exports nowhere, and the raw `parking_lot` lock as a baseline.
//!
//! ```text
//! cargo bench --bench slow_agent
//! ```
//!
//! A benchmark, not a test: it prints figures and asserts nothing.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lockprof::{EncodedProfile, Export, ExportError, ProfiledMutex, Profiler};

const THREADS: usize = 8;
const RUN: Duration = Duration::from_secs(3);

/// Acquisitions per second over `RUN`, 8 threads on one lock plus a
/// thread-local one.
fn hammer<L: Send + Sync + 'static>(lock: Arc<L>, take: fn(&L)) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let (lock, stop) = (Arc::clone(&lock), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..64 {
                        take(&lock);
                    }
                    n += 64;
                }
                n
            })
        })
        .collect();
    std::thread::sleep(RUN);
    stop.store(true, Ordering::Relaxed);
    let total: u64 = threads.into_iter().map(|t| t.join().unwrap_or(0)).sum();
    total as f64 / RUN.as_secs_f64()
}

struct Nowhere;

impl Export for Nowhere {
    fn export(&mut self, _: &EncodedProfile) -> Result<(), ExportError> {
        Ok(())
    }
    fn describe(&self) -> String {
        "nowhere".into()
    }
}

/// Reads each request and answers 200 after 3 s.
fn slow_agent() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten().take(64) {
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                }
                std::thread::sleep(Duration::from_secs(3));
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            });
        }
    });
    url
}

fn profiled() -> f64 {
    let m = Arc::new(ProfiledMutex::new(0u64));
    hammer(m, |m| *m.lock().unwrap_or_else(|e| e.into_inner()) += 1)
}

fn main() {
    let pl = Arc::new(parking_lot::Mutex::new(0u64));
    let baseline = hammer(pl, |m| *m.lock() += 1);
    println!(
        "parking_lot::Mutex (baseline)      {:>14.0} acquisitions/s",
        baseline
    );

    let p = Profiler::builder()
        .capture_pct(1.0)
        .flush_interval(Duration::from_millis(200))
        .export(Nowhere)
        .start()
        .expect("start");
    let nowhere = profiled();
    p.stop();
    println!(
        "profiled, exporting nowhere        {:>14.0} acquisitions/s",
        nowhere
    );

    let url = slow_agent();
    let p = Profiler::builder()
        .capture_pct(1.0)
        .flush_interval(Duration::from_millis(200))
        .agent_url(url)
        .api_timeout(Duration::from_secs(5))
        .start()
        .expect("start");
    let t = Instant::now();
    let slow = profiled();
    let stats = p.stop();
    println!(
        "profiled, uploading to a 3 s agent {:>14.0} acquisitions/s ({:+.1}% vs nowhere; upload {:?}; stop after {:?})",
        slow,
        (slow / nowhere - 1.0) * 100.0,
        stats.upload,
        t.elapsed().saturating_sub(RUN)
    );
}
