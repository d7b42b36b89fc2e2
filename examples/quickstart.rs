//! Swap `std::sync` locks for lockprof's, start the profiler, run a few
//! threads, stop, and see where the profile went.
//!
//! ```text
//! cargo run --example quickstart
//! DD_PROFILING_OUTPUT_PPROF=/tmp/qs/ cargo run --example quickstart   # elsewhere
//! go tool pprof -raw <the printed file>
//! ```
//!
//! The capture is set in code (100 %), so `DD_PROFILING_CAPTURE_PCT` does not
//! change it; every setting the code leaves alone, the output included, comes
//! from its `DD_*` variable when one is set.

// Was: use std::sync::{Condvar, Mutex, RwLock};
use lockprof::{named, ProfiledCondvar as Condvar, ProfiledMutex as Mutex, ProfiledRwLock as RwLock};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

named!(static REQUEST_COUNT: Mutex<u64> = Mutex::new(0));

struct Cache {
    entries: RwLock<Vec<String>>,
}

fn main() {
    let profiler = lockprof::Profiler::builder()
        .capture_pct(100.0)
        .start()
        .expect("start the profiler");

    let cache = Arc::new(named!(Cache {
        entries: RwLock::new(Vec::new()),
    }));
    named!(let jobs = Arc::new(Mutex::new(Vec::<u32>::new())));
    let ready = Arc::new(Condvar::new());

    let workers: Vec<_> = (0..4)
        .map(|i| {
            let cache = Arc::clone(&cache);
            let (jobs, ready) = (Arc::clone(&jobs), Arc::clone(&ready));
            thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || worker(i, &cache, &jobs, &ready))
                .expect("spawn worker")
        })
        .collect();
    for job in 0..200 {
        jobs.lock().unwrap().push(job);
        ready.notify_one();
    }
    for w in workers {
        w.join().expect("worker panicked");
    }

    let output = profiler.output().to_owned();
    let stats = profiler.stop();
    println!(
        "handled {} requests; {} profile(s) to {output}",
        *REQUEST_COUNT.lock().unwrap(),
        stats.profiles_exported
    );
    summary::print(&stats.files, 3, true);
}

fn worker(id: u32, cache: &Cache, jobs: &Mutex<Vec<u32>>, ready: &Condvar) {
    loop {
        let job = {
            let guard = jobs.lock().unwrap();
            let (mut guard, timeout) = ready
                .wait_timeout_while(guard, Duration::from_millis(50), |jobs| jobs.is_empty())
                .unwrap();
            if timeout.timed_out() {
                return;
            }
            guard.pop().expect("not empty")
        };
        if job % 10 == 0 {
            cache
                .entries
                .write()
                .unwrap()
                .push(format!("job {job} by worker {id}"));
        } else {
            let _ = cache.entries.read().unwrap().len();
        }
        let mut count = REQUEST_COUNT.lock().unwrap();
        *count += 1;
        thread::sleep(Duration::from_micros(200)); // held on purpose: shows up as hold time
    }
}

/// Prints the files written and the top locks, read back from them.
#[path = "common/summary.rs"]
mod summary;
