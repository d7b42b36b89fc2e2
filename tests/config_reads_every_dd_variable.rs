//! Every `DD_*` variable, the builder winning over the environment, the
//! endpoint resolution order, and each bad value named in its error.
//!
//! Environment variables are process-wide: every test here holds `SERIAL`,
//! which also keeps to one profiler at a time.

use std::sync::Mutex;
use std::time::Duration;

use lockprof::{ApiKey, Profiler, ProfilerBuilder, StartError};

static SERIAL: Mutex<()> = Mutex::new(());

const ALL: &[&str] = &[
    "DD_PROFILING_ENABLED",
    "DD_PROFILING_LOCK_ENABLED",
    "DD_PROFILING_CAPTURE_PCT",
    "DD_PROFILING_MAX_FRAMES",
    "DD_PROFILING_UPLOAD_INTERVAL",
    "DD_PROFILING_OUTPUT_PPROF",
    "DD_PROFILING_API_TIMEOUT_MS",
    "DD_PROFILING_AGENTLESS",
    "DD_PROFILING_TAGS",
    "DD_SERVICE",
    "DD_ENV",
    "DD_VERSION",
    "DD_TAGS",
    "DD_TRACE_AGENT_URL",
    "DD_AGENT_HOST",
    "DD_TRACE_AGENT_PORT",
    "DD_API_KEY",
    "DD_SITE",
];

/// Runs `f` with exactly `vars` set among the `DD_*` variables, and a temp
/// directory of its own: the default output is `<temp dir>/lockprof/`, and
/// no profile of a test may land in a directory users share.
fn with_vars<R>(vars: &[(&str, &str)], f: impl FnOnce() -> R) -> R {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let own_tmp = tempfile::tempdir().expect("a temp dir");
    let tmpdir = std::env::var_os("TMPDIR");
    std::env::set_var("TMPDIR", own_tmp.path());
    for k in ALL {
        std::env::remove_var(k);
    }
    for (k, v) in vars {
        std::env::set_var(k, v);
    }
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    for (k, _) in vars {
        std::env::remove_var(k);
    }
    match tmpdir {
        Some(t) => std::env::set_var("TMPDIR", t),
        None => std::env::remove_var("TMPDIR"),
    }
    r.unwrap_or_else(|p| std::panic::resume_unwind(p))
}

fn from_env(vars: &[(&str, &str)]) -> (ProfilerBuilder, Vec<lockprof::ConfigError>) {
    with_vars(vars, || Profiler::builder().with_env())
}

#[test]
fn every_variable_is_read() {
    let (b, errors) = from_env(&[
        ("DD_PROFILING_CAPTURE_PCT", "12.5"),
        ("DD_PROFILING_MAX_FRAMES", "32"),
        ("DD_PROFILING_UPLOAD_INTERVAL", "2.5"),
        ("DD_PROFILING_OUTPUT_PPROF", "/tmp/lockprof-cfg/x"),
        ("DD_PROFILING_API_TIMEOUT_MS", "1234"),
        ("DD_PROFILING_AGENTLESS", "true"),
        ("DD_PROFILING_TAGS", "a:1 b:2"),
        ("DD_SERVICE", "svc"),
        ("DD_ENV", "prod"),
        ("DD_VERSION", "9.9"),
        ("DD_TAGS", "team:x,owner:y"),
        ("DD_TRACE_AGENT_URL", "http://agent:9000"),
        ("DD_AGENT_HOST", "host.local"),
        ("DD_TRACE_AGENT_PORT", "9126"),
        ("DD_API_KEY", "0123456789abcdef"),
        ("DD_SITE", "datadoghq.eu"),
    ]);
    assert!(errors.is_empty(), "{errors:?}");
    let s = b.settings();
    assert_eq!(s.capture_pct, 12.5);
    assert_eq!(s.max_frames, 32);
    assert_eq!(s.flush_interval, Duration::from_millis(2500));
    assert_eq!(s.output_pprof.as_deref(), Some("/tmp/lockprof-cfg/x".as_ref()));
    let d = b.datadog_settings();
    assert_eq!(d.api_timeout, Some(Duration::from_millis(1234)));
    assert_eq!(d.agentless, Some(true));
    assert_eq!(
        d.profiling_tags.as_deref(),
        Some(&["a:1".to_owned(), "b:2".to_owned()][..])
    );
    assert_eq!(d.service.as_deref(), Some("svc"));
    assert_eq!(d.env.as_deref(), Some("prod"));
    assert_eq!(d.version.as_deref(), Some("9.9"));
    assert_eq!(
        d.tags.as_deref(),
        Some(&["team:x".to_owned(), "owner:y".to_owned()][..])
    );
    assert_eq!(d.agent_url.as_deref(), Some("http://agent:9000"));
    assert_eq!(d.agent_host.as_deref(), Some("host.local"));
    assert_eq!(d.agent_port, Some(9126));
    assert_eq!(d.api_key, Some(ApiKey::new("0123456789abcdef")));
    assert_eq!(d.site.as_deref(), Some("datadoghq.eu"));
    // The key never shows in Debug.
    assert!(!format!("{b:?}").contains("0123456789abcdef"));
}

#[test]
fn the_builder_wins_over_the_environment_in_any_order() {
    let vars = [
        ("DD_PROFILING_CAPTURE_PCT", "50"),
        ("DD_PROFILING_MAX_FRAMES", "10"),
        ("DD_PROFILING_UPLOAD_INTERVAL", "5"),
        ("DD_PROFILING_API_TIMEOUT_MS", "500"),
        ("DD_SERVICE", "from-env"),
        ("DD_TRACE_AGENT_URL", "http://env:1"),
        ("DD_TAGS", "env:tag"),
    ];
    let before = with_vars(&vars, || {
        Profiler::builder()
            .capture_pct(3.0)
            .max_frames(20)
            .flush_interval(Duration::from_secs(7))
            .api_timeout(Duration::from_secs(2))
            .service("from-builder")
            .agent_url("http://builder:2")
            .tags(["b:tag"])
            .with_env()
            .0
    });
    let after = with_vars(&vars, || {
        Profiler::builder()
            .with_env()
            .0
            .capture_pct(3.0)
            .max_frames(20)
            .flush_interval(Duration::from_secs(7))
            .api_timeout(Duration::from_secs(2))
            .service("from-builder")
            .agent_url("http://builder:2")
            .tags(["b:tag"])
    });
    for b in [before, after] {
        assert_eq!(b.settings().capture_pct, 3.0);
        assert_eq!(b.settings().max_frames, 20);
        assert_eq!(b.settings().flush_interval, Duration::from_secs(7));
        let d = b.datadog_settings();
        assert_eq!(d.api_timeout, Some(Duration::from_secs(2)));
        assert_eq!(d.service.as_deref(), Some("from-builder"));
        assert_eq!(d.agent_url.as_deref(), Some("http://builder:2"));
        assert_eq!(d.tags.as_deref(), Some(&["b:tag".to_owned()][..]));
    }
}

#[test]
fn each_bad_value_is_named_and_leaves_the_default() {
    let cases = [
        ("DD_PROFILING_CAPTURE_PCT", "abc"),
        ("DD_PROFILING_CAPTURE_PCT", "150"),
        ("DD_PROFILING_MAX_FRAMES", "0"),
        ("DD_PROFILING_UPLOAD_INTERVAL", "-1"),
        ("DD_PROFILING_API_TIMEOUT_MS", "-5"),
        ("DD_PROFILING_API_TIMEOUT_MS", "soon"),
        ("DD_PROFILING_AGENTLESS", "perhaps"),
        ("DD_TRACE_AGENT_URL", "ftp://agent:21"),
        ("DD_TRACE_AGENT_URL", "unix://relative.sock"),
        ("DD_AGENT_HOST", "bad host/"),
        ("DD_TRACE_AGENT_PORT", "70000"),
        ("DD_TRACE_AGENT_PORT", "0"),
        ("DD_SITE", "evil.com/path?"),
    ];
    let defaults = Profiler::builder();
    for (name, value) in cases {
        let (b, errors) = from_env(&[(name, value)]);
        assert_eq!(errors.len(), 1, "{name}={value}: {errors:?}");
        let e = &errors[0];
        assert_eq!((e.name.as_str(), e.value.as_str()), (name, value));
        let msg = e.to_string();
        assert!(msg.contains(name) && msg.contains(value), "{msg}");
        assert_eq!(b.settings(), defaults.settings(), "{name}={value}");
        assert_eq!(
            b.datadog_settings(),
            defaults.datadog_settings(),
            "{name}={value}"
        );
    }
}

#[test]
fn bad_builder_values_fail_start_naming_the_setting() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let err = |b: ProfilerBuilder| match b.start() {
        Err(StartError::Config(e)) => e,
        other => panic!("expected a config error, got {other:?}"),
    };
    let e = err(Profiler::builder().agent_url("gopher://x"));
    assert_eq!((e.name.as_str(), e.value.as_str()), ("agent_url", "gopher://x"));
    let e = err(Profiler::builder().capture_pct(150.0));
    assert_eq!(e.name, "capture_pct");
    let e = err(Profiler::builder().site("a/b"));
    assert_eq!(e.name, "site");
    let e = err(Profiler::builder().agentless(true));
    assert_eq!(e.name, "DD_API_KEY");
    assert!(e.to_string().contains("agentless"), "{e}");
}

#[test]
fn agentless_without_a_key_is_a_startup_error_from_env() {
    let started = with_vars(
        &[
            ("DD_PROFILING_ENABLED", "true"),
            ("DD_PROFILING_AGENTLESS", "true"),
        ],
        lockprof::start_from_env,
    );
    assert!(started.is_none());
}

#[test]
fn profiling_is_off_unless_enabled_and_lock_profiling_not_disabled() {
    assert!(with_vars(&[], lockprof::start_from_env).is_none());
    let off = with_vars(
        &[
            ("DD_PROFILING_ENABLED", "true"),
            ("DD_PROFILING_LOCK_ENABLED", "false"),
        ],
        lockprof::start_from_env,
    );
    assert!(off.is_none());
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("p");
    let output = with_vars(
        &[
            ("DD_PROFILING_ENABLED", "true"),
            ("DD_PROFILING_OUTPUT_PPROF", prefix.to_str().unwrap()),
            ("DD_PROFILING_CAPTURE_PCT", "nonsense"),
        ],
        || {
            // Stopped while the lock is held: one profiler at a time.
            let on = lockprof::start_from_env().expect("starts, with the default for the bad value");
            let output = on.output().to_owned();
            on.stop();
            output
        },
    );
    assert!(output.starts_with("files "), "{output}");
}

/// Starts with `vars` and returns where profiles go; the agent is never
/// reached (nothing listens there) and stop gives up after 100 ms.
fn output_with(vars: &[(&str, &str)], b: impl FnOnce(ProfilerBuilder) -> ProfilerBuilder) -> String {
    with_vars(vars, || {
        let builder = b(Profiler::builder()
            .with_env()
            .0
            .api_timeout(Duration::from_millis(100)));
        let p = builder.start().unwrap();
        let out = p.output().to_owned();
        p.stop();
        out
    })
}

#[test]
fn the_agent_is_resolved_in_datadogs_order() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let url = format!("http://127.0.0.1:{port}");
    // 1. The URL wins over host and port.
    let out = output_with(
        &[
            ("DD_TRACE_AGENT_URL", &url),
            ("DD_AGENT_HOST", "127.0.0.2"),
            ("DD_TRACE_AGENT_PORT", "1"),
        ],
        |b| b,
    );
    assert_eq!(out, format!("Datadog agent at {url}/profiling/v1/input"));
    // 2. Host and port, each with its default.
    let out = output_with(
        &[("DD_AGENT_HOST", "127.0.0.1"), ("DD_TRACE_AGENT_PORT", &port)],
        |b| b,
    );
    assert_eq!(out, format!("Datadog agent at {url}/profiling/v1/input"));
    let out = output_with(&[("DD_TRACE_AGENT_PORT", &port)], |b| b);
    assert_eq!(
        out,
        format!("Datadog agent at http://localhost:{port}/profiling/v1/input")
    );
    // A Unix socket URL.
    let out = output_with(
        &[("DD_TRACE_AGENT_URL", "unix:///tmp/lockprof-no-such.sock")],
        |b| b,
    );
    assert_eq!(
        out,
        "Datadog agent at unix:///tmp/lockprof-no-such.sock/profiling/v1/input"
    );
    // Files win over any agent.
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("p");
    let out = output_with(
        &[
            ("DD_TRACE_AGENT_URL", &url),
            ("DD_PROFILING_OUTPUT_PPROF", prefix.to_str().unwrap()),
        ],
        |b| b,
    );
    assert!(out.starts_with("files "), "{out}");
    // Forced either way by the builder.
    let out = output_with(&[("DD_TRACE_AGENT_URL", &url)], |b| b.upload(false));
    assert!(out.starts_with("files "), "{out}");
}

#[test]
fn with_nothing_configured_and_no_agent_profiles_go_to_files() {
    let agent_here =
        std::net::TcpStream::connect_timeout(&"127.0.0.1:8126".parse().unwrap(), Duration::from_millis(100))
            .is_ok();
    if agent_here || std::path::Path::new("/var/run/datadog/apm.socket").exists() {
        // A real agent on this machine: then uploading is the right choice.
        let out = output_with(&[], |b| b);
        assert!(out.starts_with("Datadog agent"), "{out}");
    } else {
        let out = output_with(&[], |b| b);
        assert!(out.starts_with("files "), "{out}");
        let out = output_with(&[], |b| b.upload(true));
        assert_eq!(out, "Datadog agent at http://localhost:8126/profiling/v1/input");
    }
}
