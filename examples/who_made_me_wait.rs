//! Who made me wait: request threads wait for `cache_lock` in `lookup()`,
//! and the profile says which holder caused it — `refresh_cache()`, which
//! holds the lock while it rebuilds — and which waiters it held up.
//!
//! ```text
//! cargo run --release --example who_made_me_wait
//! lockprof blame --lock cache_lock <the printed file>   # (feature `cli`)
//! ```

use lockprof::read::LockProfile;
use lockprof::{named, ProfiledMutex as Mutex};
use std::collections::HashMap;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

#[inline(never)]
fn lookup(cache: &Mutex<HashMap<u64, u64>>, key: u64) -> Option<u64> {
    cache.lock().unwrap().get(&key).copied()
}

#[inline(never)]
fn refresh_cache(cache: &Mutex<HashMap<u64, u64>>) {
    let mut map = cache.lock().unwrap();
    // The slow part, done while holding the lock.
    thread::sleep(Duration::from_millis(20));
    for k in 0..1000 {
        map.insert(k, k * 2);
    }
}

fn main() {
    let dir = std::env::temp_dir().join("lockprof-who-made-me-wait");
    let profiler = lockprof::Profiler::builder()
        .capture_pct(100.0)
        .output_pprof(dir.join("who_made_me_wait"))
        .start()
        .expect("start the profiler");

    named!(let cache_lock = Arc::new(Mutex::new(HashMap::new())));
    let until = Instant::now() + Duration::from_secs(1);
    let requests: Vec<_> = (0..4)
        .map(|i| {
            let cache = Arc::clone(&cache_lock);
            thread::spawn(move || {
                let mut n = 0u64;
                while Instant::now() < until {
                    lookup(&cache, n % 1000 + i);
                    n += 1;
                    thread::sleep(Duration::from_micros(200));
                }
            })
        })
        .collect();
    while Instant::now() < until {
        refresh_cache(&cache_lock);
        thread::sleep(Duration::from_millis(80));
    }
    for r in requests {
        r.join().expect("request thread panicked");
    }

    let stats = profiler.stop();
    let Some(file) = stats.files.last() else {
        eprintln!("no profile was written");
        return;
    };
    println!("profile: {}", file.display());
    let profile = LockProfile::from_file(file).expect("read the profile back");
    for b in profile.blame().iter().take(2) {
        let top = |frames: &[lockprof::read::Frame]| {
            frames.first().map_or("<unknown>".to_owned(), |f| {
                format!("{} (line {})", f.function, f.line)
            })
        };
        println!(
            "{}: {} caused {:.1} ms of waiting (it held the lock {:.1} ms in all)",
            b.lock_name,
            top(&b.holder),
            b.caused_wait_ns as f64 / 1e6,
            b.hold_ns as f64 / 1e6
        );
        for w in b.waiters.iter().take(2) {
            println!(
                "    {:.1} ms of it waiting in {}",
                w.caused_wait_ns as f64 / 1e6,
                top(&w.frames)
            );
        }
    }
}
