//! The on-demand endpoint (feature `http`) listens where the builder's
//! `serve` or `DD_PROFILING_LOCK_SERVE` says, on loopback only unless
//! `serve_non_loopback(true)` or `DD_PROFILING_LOCK_SERVE_NON_LOOPBACK=true`
//! allows another address (it has no authentication). Bad values are
//! refused naming the setting or the variable and the value; a port in use
//! fails the start and leaves the process free to start another profiler.
//!
//! Environment variables are process-wide: every test holds `serial()` and
//! leaves no `DD_*` variable behind.

mod common;

use std::time::Duration;

use common::{http, serial};
use lockprof::{Profiler, ProfilerBuilder, StartError};

fn builder(dir: &tempfile::TempDir) -> ProfilerBuilder {
    Profiler::builder()
        .output_pprof(dir.path().join("p"))
        .flush_interval(Duration::from_secs(3600))
}

/// Runs `f` with the variables set, and none of the `DD_*` others.
fn with_vars<R>(vars: &[(&str, &str)], f: impl FnOnce() -> R) -> R {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("DD_") {
            std::env::remove_var(name);
        }
    }
    for (name, value) in vars {
        std::env::set_var(name, value);
    }
    let r = f();
    for (name, _) in vars {
        std::env::remove_var(name);
    }
    r
}

#[test]
fn the_builder_serves_on_loopback_and_elsewhere_only_when_allowed() {
    let _turn = serial();
    let dir = tempfile::tempdir().unwrap();
    let refused = builder(&dir).ignore_env().serve("0.0.0.0:0").start().unwrap_err();
    let StartError::Config(e) = &refused else {
        panic!("not a config error: {refused}");
    };
    assert_eq!((e.name.as_str(), e.value.as_str()), ("serve", "0.0.0.0:0"));
    assert_eq!(
        refused.to_string(),
        "serve=\"0.0.0.0:0\" is not valid: not a loopback address, and the endpoint has no authentication: \
         to serve on it anyway, set DD_PROFILING_LOCK_SERVE_NON_LOOPBACK=true (or call serve_non_loopback(true))"
    );
    let malformed = builder(&dir).ignore_env().serve("6061").start().unwrap_err();
    assert_eq!(
        malformed.to_string(),
        "serve=\"6061\" is not valid: expected an IP address and port, such as 127.0.0.1:6061, [::1]:6061 or localhost:6061"
    );

    // Asked for explicitly: every interface.
    let handle = builder(&dir)
        .ignore_env()
        .serve("0.0.0.0:0")
        .serve_non_loopback(true)
        .start()
        .unwrap();
    let addr = handle.http_addr().unwrap();
    assert!(addr.ip().is_unspecified(), "{addr}");
    let local = std::net::SocketAddr::from(([127, 0, 0, 1], addr.port()));
    assert_eq!(http::get(local, "/debug/pprof/lock").status, 200);
    handle.stop();

    // Not asked: no endpoint.
    let handle = builder(&dir).ignore_env().start().unwrap();
    assert_eq!(handle.http_addr(), None);
    handle.stop();
}

#[test]
fn a_port_in_use_fails_the_start_and_frees_the_profiler() {
    let _turn = serial();
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let e = builder(&dir)
        .ignore_env()
        .serve(addr.to_string())
        .start()
        .unwrap_err();
    assert!(matches!(e, StartError::Serve { .. }), "{e:?}");
    let message = e.to_string();
    assert!(
        message.starts_with(&format!("cannot serve on-demand profiles at {addr}: ")),
        "{message}"
    );
    // Nothing was left claimed.
    builder(&dir).ignore_env().start().unwrap().stop();
}

#[test]
fn the_environment_starts_the_endpoint_and_bad_values_name_the_variable() {
    let _turn = serial();
    let dir = tempfile::tempdir().unwrap();

    let handle = with_vars(&[("DD_PROFILING_LOCK_SERVE", "127.0.0.1:0")], || {
        builder(&dir).start()
    })
    .unwrap();
    let addr = handle.http_addr().expect("served from the variable");
    assert!(addr.ip().is_loopback());
    assert_eq!(http::get(addr, "/debug/pprof/lock").status, 200);
    handle.stop();

    // The code wins over the variable.
    let handle = with_vars(&[("DD_PROFILING_LOCK_SERVE", "nonsense")], || {
        builder(&dir).serve("localhost:0").start()
    })
    .unwrap();
    assert!(handle.http_addr().is_some());
    handle.stop();

    for (vars, expected) in [
        (
            vec![("DD_PROFILING_LOCK_SERVE", "nonsense")],
            "DD_PROFILING_LOCK_SERVE=\"nonsense\" is not valid: expected an IP address and port, \
             such as 127.0.0.1:6061, [::1]:6061 or localhost:6061",
        ),
        (
            vec![("DD_PROFILING_LOCK_SERVE", "0.0.0.0:0")],
            "DD_PROFILING_LOCK_SERVE=\"0.0.0.0:0\" is not valid: not a loopback address, and the endpoint \
             has no authentication: to serve on it anyway, set DD_PROFILING_LOCK_SERVE_NON_LOOPBACK=true \
             (or call serve_non_loopback(true))",
        ),
        (
            vec![
                ("DD_PROFILING_LOCK_SERVE", "127.0.0.1:0"),
                ("DD_PROFILING_LOCK_SERVE_NON_LOOPBACK", "maybe"),
            ],
            "DD_PROFILING_LOCK_SERVE_NON_LOOPBACK=\"maybe\" is not valid: expected true or false",
        ),
    ] {
        let (b, errors) = with_vars(&vars, || builder(&dir).with_env());
        let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors, [expected], "{vars:?}");
        // A bad variable is logged by `start`, which goes on with what is
        // valid.
        let handle = b.start().unwrap();
        let served = handle.http_addr();
        handle.stop();
        let loopback_var_ok = vars.iter().any(|(_, v)| *v == "127.0.0.1:0");
        assert_eq!(served.is_some(), loopback_var_ok, "{vars:?}");
    }

    // Allowed by its variable: every interface.
    let handle = with_vars(
        &[
            ("DD_PROFILING_LOCK_SERVE", "0.0.0.0:0"),
            ("DD_PROFILING_LOCK_SERVE_NON_LOOPBACK", "true"),
        ],
        || builder(&dir).start(),
    )
    .unwrap();
    assert!(handle.http_addr().is_some_and(|a| a.ip().is_unspecified()));
    handle.stop();
}
