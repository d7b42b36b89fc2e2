//! Agentless uploads carry the API key, so they go over https only: the
//! intake URL is always `https://intake.profile.<site>/api/v2/profile`, a
//! site that carries a scheme (or anything beyond a host name) is refused
//! with an error naming the setting and the value, and an http agent URL
//! configured beside agentless mode never receives the key.
//!
//! (No setting overrides the intake URL; the unit tests in
//! `src/export/datadog` check every endpoint the settings can produce, and
//! that the exporter itself refuses an http agentless endpoint.)

mod common;
mod upload_common;

use std::time::Duration;

use common::serial;
use lockprof::{ConfigError, Profiler, ProfilerBuilder, StartError};
use upload_common::{workload, Reply, ScriptedAgent};

const KEY: &str = "lockprof-test-api-key-5f3a";

/// Sites that are URLs, or more than a host name.
const NOT_SITES: &[&str] = &[
    "http://evil.example",
    "HTTP://evil.example",
    "https://datadoghq.eu",
    "http://datadoghq.com",
    "evil.example:80",
    "evil.example/api",
    "key@evil.example",
    "datadoghq.com#@evil.example",
];

fn config_error(builder: ProfilerBuilder) -> ConfigError {
    match builder.start() {
        Err(StartError::Config(e)) => e,
        Err(e) => panic!("expected a config error, got {e}"),
        Ok(handle) => panic!("started, uploading to {}", handle.output()),
    }
}

#[test]
fn a_site_that_is_a_url_fails_start_naming_it() {
    let _turn = serial();
    for &site in NOT_SITES {
        let e = config_error(
            Profiler::builder()
                .agentless(true)
                .api_key(KEY)
                .site(site)
                .api_timeout(Duration::from_millis(100)),
        );
        assert_eq!((e.name.as_str(), e.value.as_str()), ("site", site));
        let msg = e.to_string();
        assert!(msg.contains("site") && msg.contains(site), "{msg}");
        assert!(!msg.contains(KEY), "{msg}");
    }
    let e = config_error(
        Profiler::builder()
            .agentless(true)
            .api_key(KEY)
            .site("http://evil.example"),
    );
    assert!(
        e.to_string().contains("https://intake.profile.<site>"),
        "says where agentless uploads go: {e}"
    );
}

#[test]
fn dd_site_with_a_scheme_is_reported_and_never_used() {
    let _turn = serial();
    for &site in NOT_SITES {
        std::env::set_var("DD_SITE", site);
        std::env::set_var("DD_PROFILING_AGENTLESS", "true");
        std::env::set_var("DD_API_KEY", KEY);
        let (builder, errors) = Profiler::builder().with_env();
        for name in ["DD_SITE", "DD_PROFILING_AGENTLESS", "DD_API_KEY"] {
            std::env::remove_var(name);
        }
        let e = errors
            .iter()
            .find(|e| e.name == "DD_SITE")
            .unwrap_or_else(|| panic!("DD_SITE={site:?} not reported: {errors:?}"));
        assert_eq!(e.value, site);
        assert!(!e.to_string().contains(KEY), "{e}");
        // Left unset: the default site's https intake is used, never the value.
        let dd = builder.datadog_settings();
        assert_eq!(dd.site, None, "DD_SITE={site:?}");
        assert_eq!(dd.agentless, Some(true));
    }
}

#[test]
fn agentless_with_an_http_agent_configured_sends_nothing_over_http() {
    let _turn = serial();
    common::logs::start();
    // An http agent is configured too: agentless wins, and the agent must
    // see nothing, least of all the key.
    let agent = ScriptedAgent::start(|_| Reply::Status(202));
    let timeout = Duration::from_millis(300);
    let handle = Profiler::builder()
        .agentless(true)
        .api_key(KEY)
        // Reserved: the name never resolves, so nothing leaves this machine.
        .site("lockprof-test.invalid")
        .agent_url(agent.url())
        .capture_pct(100.0)
        .flush_interval(Duration::from_millis(200))
        .api_timeout(timeout)
        .start()
        .expect("start");
    assert_eq!(
        handle.output(),
        "Datadog agentless intake at https://intake.profile.lockprof-test.invalid/api/v2/profile"
    );
    workload(50);
    std::thread::sleep(Duration::from_millis(500));
    let stats = handle.stop();
    let upload = stats.upload.expect("upload stats");
    assert_eq!(upload.sent, 0, "{upload:?}");
    assert!(
        upload.failed + upload.dropped >= 1,
        "uploads were attempted: {upload:?}"
    );
    assert!(agent.requests().is_empty(), "the http agent received a request");
    let logged = common::logs::all();
    assert!(
        logged.contains("https://intake.profile.lockprof-test.invalid"),
        "{logged}"
    );
    assert!(!logged.contains(KEY), "the key was logged");
}
