//! The locks the benchmarks build through `PeerMutex` are the instrumented
//! ones: each contender's own report shows the acquisitions. One test, so
//! that hotpath's one-per-process guard and the environment it reads are
//! not shared with another test thread.

use std::time::Duration;

use lockprof::{EncodedProfile, Export, ExportError, ProfiledMutex, Profiler};
use lockprof_peers::PeerMutex;

struct Discard;

impl Export for Discard {
    fn export(&mut self, _profile: &EncodedProfile) -> Result<(), ExportError> {
        Ok(())
    }
    fn describe(&self) -> String {
        "discarded".into()
    }
}

const N: u64 = 10_000;

fn hammer<L: PeerMutex<u64>>(l: &L) {
    for _ in 0..N {
        l.with(|v| *v += 1);
    }
}

#[test]
fn every_peer_records_what_the_bench_measures() {
    let dir = std::env::temp_dir().join(format!("lockprof-peers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let report = dir.join("hotpath.json");
    std::env::set_var("HOTPATH_METRICS_SERVER_OFF", "1");
    let guard = hotpath::HotpathGuardBuilder::new("test")
        .format(hotpath::Format::Json)
        .output_path(&report)
        .build();

    // lockprof at its default capture rate samples about 1 % of them.
    let profiler = Profiler::builder()
        .capture_pct(lockprof::DEFAULT_CAPTURE_PCT)
        .export(Discard)
        .start()
        .unwrap();
    hammer(&<ProfiledMutex<u64> as PeerMutex<u64>>::new(0));
    std::thread::sleep(Duration::from_millis(100));
    let stats = profiler.stop();
    assert!(
        stats.events_recorded + stats.events_dropped > 10,
        "lockprof sampled {stats:?}"
    );

    let lt = <locktick::parking_lot::Mutex<u64> as PeerMutex<u64>>::new(0);
    hammer(&lt);
    let uses: usize = locktick::lock_snapshots()
        .iter()
        .flat_map(|l| l.known_guards.values())
        .map(|g| g.num_uses)
        .sum();
    assert_eq!(uses as u64, N, "locktick counted its guards");

    let hp = <hotpath::wrap::parking_lot::Mutex<u64> as PeerMutex<u64>>::new(0);
    hammer(&hp);
    drop(guard);
    let json = std::fs::read_to_string(&report).unwrap();
    assert!(
        json.contains(&format!("\"count\":{N}")) && json.contains("\"acquire_avg\""),
        "hotpath timed every acquisition: {json}"
    );

    // tracing-mutex: taking two locks in both orders is a cycle it reports.
    let a = <tracing_mutex::parkinglot::tracing::Mutex<u64> as PeerMutex<u64>>::new(0);
    let b = <tracing_mutex::parkinglot::tracing::Mutex<u64> as PeerMutex<u64>>::new(0);
    a.with(|_| b.with(|_| ()));
    let cycle = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| b.with(|_| a.with(|_| ()))));
    assert!(cycle.is_err(), "tracing-mutex saw the lock-order cycle");

    std::fs::remove_dir_all(&dir).ok();
}
