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

/// Top-level keys of an object, in the order they are written.
fn keys_in_order(json: &str) -> Vec<String> {
    struct Keys<'a>(&'a mut Vec<String>);
    impl<'de> serde::de::Visitor<'de> for Keys<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some((k, _)) = map.next_entry::<String, serde::de::IgnoredAny>()? {
                self.0.push(k);
            }
            Ok(())
        }
    }
    let mut keys = Vec::new();
    let mut de = serde_json::Deserializer::from_str(json);
    serde::Deserializer::deserialize_map(&mut de, Keys(&mut keys)).unwrap();
    keys
}

#[test]
fn the_request_is_laid_out_as_ddtrace_lays_out_its_own() {
    let _s = serial();
    let agent = ScriptedAgent::start(|_| Reply::Status(200));
    let (stats, _) = one_upload(&agent.url(), Duration::from_secs(5));
    assert_eq!(stats.sent, 1);
    let req = &agent.requests()[0];
    assert!(
        req.head.starts_with("POST /profiling/v1/input HTTP/1.1\r\n"),
        "{}",
        req.head
    );
    // As ddtrace 4.16's (tests/data/ddtrace-4.16-upload-request.txt), with
    // our own origin.
    assert_eq!(req.header("dd-evp-origin").as_deref(), Some("lockprof"));
    assert_eq!(
        req.header("dd-evp-origin-version").as_deref(),
        Some(env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(req.header("dd-api-key"), None);
    assert_eq!(
        req.header("content-length").map(|l| l.parse::<usize>().unwrap()),
        Some(req.body.len())
    );
    let parts = common::parse_multipart(&req.header("content-type").unwrap(), &req.body);
    assert_eq!(parts[0].name, "event");
    assert_eq!(parts[0].filename.as_deref(), Some("event.json"));
    assert_eq!(parts[0].content_type.as_deref(), Some("application/json"));
    assert_eq!(
        parts[1].content_type, None,
        "attachments carry no content type, as ddtrace's"
    );

    // event.json: ddtrace's keys in ddtrace's order, less its Python-only
    // `process_tags`.
    let reference = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/ddtrace-4.16-upload-event.json"
    ))
    .unwrap();
    let mut expected = keys_in_order(&reference);
    expected.retain(|k| k != "process_tags");
    let ours = keys_in_order(std::str::from_utf8(&parts[0].body).unwrap());
    assert_eq!(ours, expected);
}
