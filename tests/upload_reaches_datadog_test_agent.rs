//! End to end against Datadog's own test agent (`ddapm-test-agent`, PyPI),
//! installed by `scripts/test.sh` into `.venv/`: a profiled workload uploads
//! every second, over TCP and over a Unix socket, and every header, event
//! field and tag is checked, and the pprof decoded.

mod upload_common;
use upload_common as common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use common::test_agent::{header, TestAgent};
use common::{parse_multipart, workload};
use lockprof::read::LockProfile;
use lockprof::Profiler;
use serde_json::Value;

/// One profiler per process at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Checks one upload in full; returns (profile_seq, runtime-id, lock names).
fn check_upload(req: &Value, expect_tags: &[&str], caused_wait: bool) -> (u64, String, Vec<String>) {
    assert_eq!(req["method"], "POST");
    assert_eq!(header(req, "DD-EVP-ORIGIN"), Some("lockprof"));
    assert_eq!(
        header(req, "DD-EVP-ORIGIN-VERSION"),
        Some(env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(header(req, "DD-API-KEY"), None, "no API key through an agent");
    let content_type = header(req, "Content-Type").expect("content type");
    let body = base64::engine::general_purpose::STANDARD
        .decode(req["body"].as_str().unwrap())
        .unwrap();
    let parts = parse_multipart(content_type, &body);
    assert_eq!(parts.len(), 2, "{parts:?}");

    let event = &parts[0];
    assert_eq!(event.name, "event");
    assert_eq!(event.filename.as_deref(), Some("event.json"));
    assert_eq!(event.content_type.as_deref(), Some("application/json"));
    let ev: Value = serde_json::from_slice(&event.body).unwrap();
    let obj = ev.as_object().unwrap();
    for key in [
        "attachments",
        "tags_profiler",
        "start",
        "end",
        "family",
        "version",
        "endpoint_counts",
        "internal",
        "info",
    ] {
        assert!(obj.contains_key(key), "event.json lacks {key}: {ev}");
    }
    assert_eq!(ev["attachments"], serde_json::json!(["lock.pprof"]));
    assert_eq!(ev["family"], "rust");
    assert_eq!(ev["version"], "4");
    assert!(ev["endpoint_counts"].is_null());
    for key in ["start", "end"] {
        let t = ev[key].as_str().unwrap();
        // 2026-11-22T01:21:56.285483012Z
        assert_eq!(t.len(), 30, "{key}={t}");
        assert!(
            t.ends_with('Z') && &t[10..11] == "T" && &t[19..20] == ".",
            "{key}={t}"
        );
    }
    assert!(ev["start"].as_str() < ev["end"].as_str());
    for key in [
        "events_recorded",
        "events_dropped",
        "sample_count",
        "internal_panics",
        "profiles_sent",
        "profiles_failed",
        "profiles_dropped",
        "upload_retries",
    ] {
        assert!(ev["internal"][key].is_u64(), "internal.{key}: {ev}");
    }
    let settings = &ev["info"]["profiler"]["settings"];
    assert_eq!(settings["capture_pct"], 100.0);
    assert_eq!(settings["upload_interval"], 1.0);
    assert_eq!(settings["max_frames"], 64);
    assert_eq!(settings["agentless"], false);
    assert!(settings["api_timeout_ms"].is_u64());

    let tags: Vec<&str> = ev["tags_profiler"].as_str().unwrap().split(',').collect();
    let tag = |k: &str| -> String {
        let found: Vec<&&str> = tags.iter().filter(|t| t.split(':').next() == Some(k)).collect();
        assert_eq!(found.len(), 1, "tag {k} in {tags:?}");
        found[0][k.len() + 1..].to_owned()
    };
    assert_eq!(tag("language"), "rust");
    assert_eq!(tag("runtime"), "rust");
    assert!(tag("runtime_version").starts_with("1."), "{tags:?}");
    assert_eq!(tag("profiler_version"), env!("CARGO_PKG_VERSION"));
    assert_eq!(tag("process_id"), std::process::id().to_string());
    let runtime_id = tag("runtime-id");
    assert_eq!(runtime_id.len(), 36);
    let seq: u64 = tag("profile_seq").parse().unwrap();
    assert!(
        !tags.iter().any(|t| t.starts_with("host:")),
        "host only agentless"
    );
    for t in expect_tags {
        assert!(tags.contains(t), "{t} not in {tags:?}");
    }

    let pprof = &parts[1];
    assert_eq!(pprof.name, "lock.pprof");
    assert_eq!(pprof.filename.as_deref(), Some("lock.pprof"));
    assert!(pprof.body.starts_with(&[0x1f, 0x8b]), "gzip'd");
    let profile = LockProfile::from_bytes(&pprof.body).unwrap();
    // Exactly Datadog's four sample types, unless lockprof's own was asked
    // for: an unknown one must never get the profile dropped.
    let types: Vec<&str> = profile.sample_types.iter().map(|(t, _)| t.as_str()).collect();
    let mut expected = vec![
        "lock-acquire",
        "lock-acquire-wait",
        "lock-release",
        "lock-release-hold",
    ];
    if caused_wait {
        expected.push("lock-caused-wait");
    } else {
        assert!(
            profile.samples.iter().all(|s| s.caused_wait_ns == 0
                && s.label_num("stack id").is_none()
                && s.label_num("waiter stack id").is_none()),
            "caused wait left in an upload"
        );
    }
    assert_eq!(types, expected);
    (seq, runtime_id, profile.lock_names().into_iter().collect())
}

/// Runs the workload until two profiles have been sent (a 1 s interval;
/// a loaded machine may take longer).
fn run_until_two_uploads(profiler: &lockprof::ProfilerHandle) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while profiler.stats().upload.expect("uploading").sent < 2 {
        assert!(
            Instant::now() < deadline,
            "no two uploads in 60 s: {:?}",
            profiler.stats()
        );
        workload(20);
        std::thread::sleep(Duration::from_millis(20));
    }
    workload(20);
}

fn check_session(agent: &TestAgent, expect_tags: &[&str], caused_wait: bool) {
    let requests = agent.profile_requests();
    assert!(
        requests.len() >= 2,
        "expected periodic uploads, got {}",
        requests.len()
    );
    let mut seqs = Vec::new();
    let mut ids = Vec::new();
    let mut names = Vec::new();
    for r in &requests {
        let (seq, id, n) = check_upload(r, expect_tags, caused_wait);
        seqs.push(seq);
        ids.push(id);
        names.extend(n);
    }
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "profile_seq increases: {seqs:?}"
    );
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "one runtime-id: {ids:?}");
    for lock in ["UPLOAD_TEST_COUNTER", "upload_test_local"] {
        assert!(
            names.iter().any(|n| n.ends_with(&format!(":{lock}"))),
            "{lock} not in {names:?}"
        );
    }
}

#[test]
fn profiles_configured_by_env_reach_the_test_agent_over_tcp() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let agent = TestAgent::start();
    let vars = [
        ("DD_PROFILING_ENABLED", "true".to_owned()),
        ("DD_TRACE_AGENT_URL", format!("http://{}", agent.addr)),
        ("DD_PROFILING_UPLOAD_INTERVAL", "1".to_owned()),
        ("DD_PROFILING_CAPTURE_PCT", "100".to_owned()),
        ("DD_SERVICE", "lockprof-e2e".to_owned()),
        ("DD_ENV", "test".to_owned()),
        ("DD_VERSION", "1.2.3".to_owned()),
        ("DD_TAGS", "team:locks, owner:rust,:bad".to_owned()),
        ("DD_PROFILING_TAGS", "kind:e2e".to_owned()),
    ];
    for (k, v) in &vars {
        std::env::set_var(k, v);
    }
    let profiler = lockprof::start_from_env();
    for (k, _) in &vars {
        std::env::remove_var(k);
    }
    let profiler = profiler.expect("started from env");
    assert!(
        profiler.output().contains(&agent.addr.to_string()),
        "{}",
        profiler.output()
    );
    run_until_two_uploads(&profiler);
    let stats = profiler.stop();
    let upload = stats.upload.expect("upload stats");
    assert!(upload.sent >= 2, "{stats:?}");
    assert_eq!((upload.failed, upload.dropped), (0, 0), "{stats:?}");
    check_session(
        &agent,
        &[
            "service:lockprof-e2e",
            "env:test",
            "version:1.2.3",
            "team:locks",
            "owner:rust",
            "kind:e2e",
        ],
        false,
    );
    assert_eq!(agent.profile_requests().len() as u64, upload.sent);
}

#[test]
fn profiles_reach_the_test_agent_over_a_unix_socket() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let agent = TestAgent::start();
    let profiler = Profiler::builder()
        .agent_url(format!("unix://{}", agent.socket.display()))
        .capture_pct(100.0)
        .flush_interval(Duration::from_secs(1))
        .service("lockprof-uds")
        .upload_caused_wait(true)
        .start()
        .unwrap();
    assert!(profiler.output().contains("unix://"), "{}", profiler.output());
    run_until_two_uploads(&profiler);
    let stats = profiler.stop();
    assert!(stats.upload.unwrap().sent >= 2, "{stats:?}");
    check_session(&agent, &["service:lockprof-uds"], true);
}
