//! Locks made per request (issue #15's "churn" target): 2 threads each make a
//! lock, lock it 3 times and drop it, in a loop, first with no profiler, then
//! at the default capture (1 %) with the default 60 s flush interval.
//!
//! ```text
//! cargo run --release --example churn                          # 60 s each way
//! cargo run --release --example churn -- --seconds 10 --names 2000
//! ```
//!
//! `--names N` gives the locks `N` distinct names made at run time
//! (`churn-0000000`, …), reused round-robin, as a server that names a lock
//! after its request's route or tenant would; without it every lock has the
//! name of its one line. Prints the peak RSS, both throughputs and their
//! ratio, and checks that the profiles count exactly the acquisitions the
//! workload made, each against the issue's target.

use std::collections::BTreeSet;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lockprof::read::LockProfile;
use lockprof::{EncodedProfile, Export, ExportError, ProfiledMutex, Profiler, DEFAULT_CAPTURE_PCT};

const THREADS: usize = 2;
const LOCKS_PER_REQUEST: u64 = 3;
/// Marks the churned locks' names in the profile (`churn.rs:<line>` or
/// `churn.rs:<line>:churn-<n>`).
const FILE: &str = "churn.rs:";

/// Keeps every profile written, compressed: they are read after the peak
/// RSS is taken, so that decoding them (tens of MiB for a profile with
/// thousands of samples) is not counted as the profiler's memory.
#[derive(Clone, Default)]
struct Kept(Arc<Mutex<Vec<Vec<u8>>>>);

impl Export for Kept {
    fn export(&mut self, profile: &EncodedProfile) -> Result<(), ExportError> {
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        kept.push(profile.gzipped_pprof.clone());
        Ok(())
    }
    fn describe(&self) -> String {
        "kept in memory".into()
    }
}

/// The churned locks' acquisitions and releases over all `profiles`, and
/// their names.
#[derive(Default, Debug)]
struct Counted {
    acquired: i64,
    released: i64,
    names: BTreeSet<String>,
    unreadable: u64,
}

fn count(profiles: &[Vec<u8>]) -> Counted {
    let mut t = Counted::default();
    for bytes in profiles {
        let Ok(p) = LockProfile::from_bytes(bytes) else {
            t.unreadable += 1;
            continue;
        };
        for s in &p.samples {
            let Some(name) = s.lock_name.as_deref().filter(|n| n.starts_with(FILE)) else {
                continue;
            };
            t.acquired += s.acquire;
            t.released += s.release;
            if !t.names.contains(name) {
                t.names.insert(name.to_owned());
            }
        }
    }
    t
}

/// A field of /proc/self/status in KiB (Linux).
fn status_kib(name: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .unwrap_or(f64::NAN)
}

/// `(VmHWM, VmRSS)` in MiB.
fn rss_mib() -> (f64, f64) {
    (status_kib("VmHWM:") / 1024.0, status_kib("VmRSS:") / 1024.0)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// One request: a lock made, locked 3 times, dropped.
#[inline(never)]
fn request(n: u64, name: Option<&'static str>) -> u64 {
    let m = match name {
        Some(name) => ProfiledMutex::new(n).named(name),
        None => ProfiledMutex::new(n),
    };
    for _ in 0..LOCKS_PER_REQUEST {
        *m.lock().unwrap() += 1;
    }
    m.into_inner().unwrap()
}

struct Run {
    requests: u64,
    elapsed: Duration,
    /// Highest VmRSS seen, sampled every 100 ms.
    rss_max_mib: f64,
}

impl Run {
    fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
}

/// `THREADS` threads make requests for `seconds`.
fn run(seconds: u64, names: &[&'static str]) -> Run {
    let stop = AtomicBool::new(false);
    let requests = AtomicU64::new(0);
    let started = Instant::now();
    let mut rss_max_mib: f64 = 0.0;
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (stop, requests) = (&stop, &requests);
            s.spawn(move || {
                let mut n = 0u64;
                let mut next_name = t;
                while !stop.load(Relaxed) {
                    for _ in 0..1000 {
                        let name = (!names.is_empty()).then(|| {
                            next_name = (next_name + 1) % names.len();
                            names[next_name]
                        });
                        black_box(request(n, name));
                        n += 1;
                    }
                }
                requests.fetch_add(n, Relaxed);
            });
        }
        let deadline = started + Duration::from_secs(seconds);
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100).min(deadline - Instant::now().min(deadline)));
            rss_max_mib = rss_max_mib.max(rss_mib().1);
        }
        stop.store(true, Relaxed);
    });
    Run {
        requests: requests.into_inner(),
        elapsed: started.elapsed(),
        rss_max_mib,
    }
}

fn report(what: &str, target: &str, ok: bool) {
    let verdict = if ok { "ok" } else { "MISSED" };
    println!("{what}   (target {target}: {verdict})");
}

fn main() {
    let mut seconds = 60;
    let mut names_wanted = 0usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || {
            args.next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("{a} wants a number"))
        };
        match a.as_str() {
            "--seconds" => seconds = value(),
            "--names" => names_wanted = value() as usize,
            _ => panic!("unknown argument {a}: expected --seconds N or --names N"),
        }
    }
    let names: Vec<&'static str> = (0..names_wanted)
        .map(|i| &*Box::leak(format!("churn-{i:07}").into_boxed_str()))
        .collect();
    let naming = if names.is_empty() {
        "one name".to_owned()
    } else {
        format!("{} run-time names", names.len())
    };
    println!(
        "churn: {THREADS} threads, a lock per request locked {LOCKS_PER_REQUEST} times, {naming}, {seconds} s each way (load average {})",
        load_average()
    );

    let unprofiled = run(seconds, &names);
    println!(
        "no profiler: {} requests, {:.2} M requests/s, RSS max {:.1} MiB",
        unprofiled.requests,
        unprofiled.per_second() / 1e6,
        unprofiled.rss_max_mib
    );

    let kept = Kept::default();
    let handle = Profiler::builder()
        .capture_pct(DEFAULT_CAPTURE_PCT)
        .export(kept.clone())
        .start()
        .expect("start the profiler");
    let profiled = run(seconds, &names);
    let stats = handle.stop();
    // Before the profiles are decoded (tens of MiB, not the profiler's).
    let (hwm, _) = rss_mib();
    let file_mib = status_kib("RssFile:") / 1024.0;
    println!(
        "capture {DEFAULT_CAPTURE_PCT} %: {} requests, {:.2} M requests/s, RSS max {:.1} MiB; {} events recorded, {} dropped",
        profiled.requests,
        profiled.per_second() / 1e6,
        profiled.rss_max_mib,
        stats.events_recorded,
        stats.events_dropped
    );

    report(
        &format!(
            "peak RSS {hwm:.1} MiB (most of it the flush's symbolizer: the executable's debug info, {file_mib:.0} MiB of it mapped from the file; {:.1} MiB at most while requests ran)",
            profiled.rss_max_mib
        ),
        "< 64 MiB",
        hwm < 64.0,
    );
    let ratio = unprofiled.per_second() / profiled.per_second();
    report(
        &format!(
            "throughput no profiler/profiled ({:.2} M/s vs {:.2} M/s): {ratio:.2}x",
            unprofiled.per_second() / 1e6,
            profiled.per_second() / 1e6
        ),
        "<= 1.30x",
        ratio <= 1.3,
    );
    let profiles = std::mem::take(&mut *kept.0.lock().unwrap_or_else(|e| e.into_inner()));
    let t = count(&profiles);
    let expected = (profiled.requests * LOCKS_PER_REQUEST) as i64;
    report(
        &format!(
            "counted {} acquisitions and {} releases of {expected} made, over {} lock name(s) in {} profile(s){}",
            t.acquired,
            t.released,
            t.names.len(),
            profiles.len(),
            if t.unreadable > 0 {
                format!(", {} unreadable", t.unreadable)
            } else {
                String::new()
            }
        ),
        "exact",
        t.acquired == expected && t.released == expected && t.unreadable == 0,
    );
    println!("load average at the end: {}", load_average());
}
