//! Uploads against a scripted agent on loopback: refused connections, 5xx
//! then success, 403, and an agent that never answers. The profiler keeps
//! going, retries only what is worth retrying, counts everything, and stops
//! within its timeout.

mod upload_common;
use upload_common as common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{closed_port, workload, Reply, ScriptedAgent};
use lockprof::{Profiler, UploadStats};

/// One profiler per process at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A profiler whose only upload is the last profile, at stop. A 3 s period
/// makes retries wait 150 to 450 ms, then twice that.
fn one_upload(url: &str, timeout: Duration) -> (UploadStats, Duration) {
    let profiler = Profiler::builder()
        .agent_url(url)
        .capture_pct(100.0)
        .flush_interval(Duration::from_secs(3))
        .api_timeout(timeout)
        .start()
        .unwrap();
    workload(50);
    let t0 = Instant::now();
    let stats = profiler.stop();
    (stats.upload.expect("upload stats"), t0.elapsed())
}

#[test]
fn connection_refused_is_retried_then_counted_as_failed() {
    let _s = serial();
    let url = format!("http://127.0.0.1:{}", closed_port());
    let (stats, took) = one_upload(&url, Duration::from_secs(5));
    assert_eq!(stats.sent, 0);
    assert_eq!(stats.failed, 1, "{stats:?}");
    assert_eq!(stats.retries, 2, "{stats:?}");
    assert!(took < Duration::from_secs(5), "stop took {took:?}");
}

#[test]
fn a_500_is_retried_and_the_profile_arrives_once() {
    let _s = serial();
    let agent = ScriptedAgent::start(|n| Reply::Status(if n == 0 { 500 } else { 200 }));
    let (stats, _) = one_upload(&agent.url(), Duration::from_secs(5));
    assert_eq!(
        stats,
        UploadStats {
            sent: 1,
            failed: 0,
            dropped: 0,
            retries: 1
        }
    );
    let requests = agent.requests();
    assert_eq!(requests.len(), 2);
    let pprof = |r: &common::Received| {
        let parts = common::parse_multipart(&r.header("content-type").unwrap(), &r.body);
        parts[1].body.clone()
    };
    assert_eq!(
        pprof(&requests[0]),
        pprof(&requests[1]),
        "the same profile, retried"
    );
    let gap = requests[1].at - requests[0].at;
    assert!(
        gap >= Duration::from_millis(140),
        "backoff before the retry: {gap:?}"
    );
}

#[test]
fn a_403_is_not_retried() {
    let _s = serial();
    let agent = ScriptedAgent::start(|_| Reply::Status(403));
    let (stats, _) = one_upload(&agent.url(), Duration::from_secs(5));
    assert_eq!(
        stats,
        UploadStats {
            sent: 0,
            failed: 1,
            dropped: 0,
            retries: 0
        }
    );
    assert_eq!(agent.requests().len(), 1);
}

#[test]
fn a_404_is_not_retried() {
    let _s = serial();
    let agent = ScriptedAgent::start(|_| Reply::Status(404));
    let (stats, _) = one_upload(&agent.url(), Duration::from_secs(5));
    assert_eq!((stats.failed, stats.retries), (1, 0), "{stats:?}");
    assert_eq!(agent.requests().len(), 1);
}

#[test]
fn an_agent_that_never_answers_costs_at_most_the_timeout() {
    let _s = serial();
    let agent = ScriptedAgent::start(|_| Reply::Hang);
    let timeout = Duration::from_millis(1500);
    let profiler = Profiler::builder()
        .agent_url(agent.url())
        .capture_pct(100.0)
        .flush_interval(Duration::from_millis(100))
        .api_timeout(timeout)
        .start()
        .unwrap();
    // Profiles pile up behind the hung request: the oldest are dropped.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(2) {
        workload(20);
        std::thread::sleep(Duration::from_millis(20));
    }
    let t0 = Instant::now();
    let stats = profiler.stop();
    let took = t0.elapsed();
    // Building the last profile comes first; the upload then gets the timeout.
    assert!(took < timeout + Duration::from_secs(2), "stop took {took:?}");
    let upload = stats.upload.unwrap();
    assert_eq!(upload.sent, 0, "{upload:?}");
    assert!(upload.dropped > 0, "a full queue drops the oldest: {upload:?}");
    assert!(upload.failed >= 1, "{upload:?}");
    assert!(!agent.requests().is_empty());
}

#[test]
fn counts_reach_the_next_event() {
    let _s = serial();
    let agent = ScriptedAgent::start(|n| Reply::Status(if n == 0 { 403 } else { 200 }));
    let profiler = Profiler::builder()
        .agent_url(agent.url())
        .capture_pct(100.0)
        .flush_interval(Duration::from_secs(10))
        .api_timeout(Duration::from_secs(5))
        .start()
        .unwrap();
    workload(10);
    profiler.flush();
    let deadline = Instant::now() + Duration::from_secs(5);
    while agent.requests().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(100));
    let stats = profiler.stop();
    assert_eq!(stats.upload.unwrap().sent, 1);
    let requests = agent.requests();
    assert_eq!(requests.len(), 2);
    let ct = requests[1].header("content-type").unwrap();
    let parts = common::parse_multipart(&ct, &requests[1].body);
    let event: serde_json::Value = serde_json::from_slice(&parts[0].body).unwrap();
    assert_eq!(event["internal"]["profiles_failed"], 1, "{event}");
    assert_eq!(event["internal"]["profiles_sent"], 0, "{event}");
}
