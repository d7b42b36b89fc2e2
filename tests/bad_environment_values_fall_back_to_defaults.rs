//! Every `DD_PROFILING_*` variable, set to garbage, a negative, a huge, a
//! tiny, an empty or a non-UTF-8 value: an error (from `with_env`) or a
//! logged warning (from `start_from_env`) naming the variable, the default
//! used, the profiler still started, and never a panic.

mod common;

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use common::{logs, serial};
use lockprof::{start_from_env, try_start_from_env, NotStarted, Profiler, Settings, StartError};

const VARS: [&str; 6] = [
    "DD_PROFILING_ENABLED",
    "DD_PROFILING_LOCK_ENABLED",
    "DD_PROFILING_CAPTURE_PCT",
    "DD_PROFILING_MAX_FRAMES",
    "DD_PROFILING_UPLOAD_INTERVAL",
    "DD_PROFILING_OUTPUT_PPROF",
];

/// Bad values, by kind. Empty counts as unset (as in Datadog's libraries):
/// no error, the default.
fn bad_values() -> Vec<(&'static str, OsString)> {
    vec![
        ("garbage", "lots of 🦀 and \"quotes\"\n".into()),
        ("negative", "-5".into()),
        ("huge", "99999999999999999999999999999".into()),
        ("huge float", "1e308".into()),
        ("infinite", "inf".into()),
        ("not a number", "NaN".into()),
        ("tiny", "1e-300".into()),
        ("below the smallest capture", "1e-20".into()),
        ("overflowing to infinity", "1e309".into()),
        ("empty", "".into()),
        ("blank", "   ".into()),
        ("non-UTF-8", OsString::from_vec(vec![b'4', 0xff, 0xfe, b'2'])),
    ]
}

fn clear_env() {
    for v in VARS {
        std::env::remove_var(v);
    }
}

/// Which of the core settings `value` is a valid value for, if any: those are
/// not bad input for that variable.
fn valid_for(var: &str, value: &OsString) -> bool {
    let Some(v) = value.to_str() else {
        return false;
    };
    match var {
        // Any UTF-8 string is a path.
        "DD_PROFILING_OUTPUT_PPROF" => !v.trim().is_empty(),
        "DD_PROFILING_CAPTURE_PCT" => v
            .trim()
            .parse::<f64>()
            .is_ok_and(|p| p == 0.0 || (1e-6..=100.0).contains(&p)),
        _ => false,
    }
}

#[test]
fn with_env_names_every_bad_variable_and_keeps_the_default() {
    let _turn = serial();
    for var in &VARS[2..] {
        for (kind, value) in bad_values() {
            clear_env();
            std::env::set_var(var, &value);
            let (builder, errors) = Profiler::builder().with_env();
            let unset = value.to_str().is_some_and(|v| v.trim().is_empty());
            if unset || valid_for(var, &value) {
                assert!(errors.is_empty(), "{var} {kind}: {errors:?}");
                continue;
            }
            assert_eq!(errors.len(), 1, "{var} {kind}: {errors:?}");
            assert_eq!(errors[0].name, *var, "{kind}");
            assert!(errors[0].to_string().starts_with(var), "{}", errors[0]);
            // The text given, not a value parsed from it (`1e309` is not `inf`).
            assert_eq!(errors[0].value, value.to_string_lossy().trim(), "{var} {kind}");
            assert_eq!(*builder.settings(), Settings::default(), "{var} {kind}");
            // The defaults left in place are startable.
            builder.settings().validate().unwrap();
        }
    }
    clear_env();
}

#[test]
fn all_variables_bad_at_once_give_one_error_each() {
    let _turn = serial();
    clear_env();
    for var in &VARS[2..5] {
        std::env::set_var(var, "garbage");
    }
    std::env::set_var("DD_PROFILING_OUTPUT_PPROF", OsString::from_vec(vec![0xff]));
    let (builder, errors) = Profiler::builder().with_env();
    let mut named: Vec<&str> = errors.iter().map(|e| e.name.as_str()).collect();
    named.sort();
    assert_eq!(
        named,
        [
            "DD_PROFILING_CAPTURE_PCT",
            "DD_PROFILING_MAX_FRAMES",
            "DD_PROFILING_OUTPUT_PPROF",
            "DD_PROFILING_UPLOAD_INTERVAL"
        ]
    );
    assert_eq!(*builder.settings(), Settings::default());
    clear_env();
}

#[test]
fn start_from_env_warns_names_the_variable_and_starts_with_the_default() {
    let _turn = serial();
    let dir = tempfile::tempdir().unwrap();
    // The default output is under the temp dir: keep it in ours.
    let tmpdir = std::env::var_os("TMPDIR");
    std::env::set_var("TMPDIR", dir.path());
    logs::start();
    for var in &VARS[2..] {
        for (kind, value) in bad_values() {
            clear_env();
            std::env::set_var("DD_PROFILING_ENABLED", "true");
            if *var != "DD_PROFILING_OUTPUT_PPROF" {
                std::env::set_var("DD_PROFILING_OUTPUT_PPROF", dir.path().join("p"));
            }
            // An output prefix is any path: keep the relative ones (`NaN`,
            // `-5`) inside our directory, not in the working directory.
            let blank = value.to_str().is_some_and(|v| v.trim().is_empty());
            let value = if *var == "DD_PROFILING_OUTPUT_PPROF" && !blank {
                dir.path().join(&value).into_os_string()
            } else {
                value
            };
            std::env::set_var(var, &value);
            logs::start();
            let handle = start_from_env();
            let handle = handle.unwrap_or_else(|| panic!("{var} {kind}: not started: {}", logs::all()));
            handle.stop();
            let warnings = logs::at(log::Level::Warn);
            let unset = value.to_str().is_some_and(|v| v.trim().is_empty());
            if unset || valid_for(var, &value) {
                assert!(warnings.is_empty(), "{var} {kind}: {warnings:?}");
            } else {
                assert_eq!(warnings.len(), 1, "{var} {kind}: {warnings:?}");
                assert!(warnings[0].contains(var), "{}", warnings[0]);
                assert!(warnings[0].contains("using the default"), "{}", warnings[0]);
            }
            assert!(logs::at(log::Level::Error).is_empty(), "{}", logs::all());
        }
    }
    clear_env();
    match tmpdir {
        Some(t) => std::env::set_var("TMPDIR", t),
        None => std::env::remove_var("TMPDIR"),
    }
}

#[test]
fn bad_switches_warn_and_keep_their_defaults() {
    let _turn = serial();
    for (kind, value) in bad_values() {
        let unset = value.to_str().is_some_and(|v| v.trim().is_empty());
        // DD_PROFILING_ENABLED defaults to false: nothing starts.
        clear_env();
        std::env::set_var("DD_PROFILING_ENABLED", &value);
        logs::start();
        assert!(start_from_env().is_none(), "ENABLED {kind}");
        let warnings = logs::at(log::Level::Warn);
        if unset {
            assert!(warnings.is_empty(), "{kind}: {warnings:?}");
        } else {
            assert_eq!(warnings.len(), 1, "{kind}: {warnings:?}");
            assert!(warnings[0].contains("DD_PROFILING_ENABLED"), "{}", warnings[0]);
        }
        // DD_PROFILING_LOCK_ENABLED defaults to true: the profiler starts.
        let dir = tempfile::tempdir().unwrap();
        clear_env();
        std::env::set_var("DD_PROFILING_ENABLED", "1");
        std::env::set_var("DD_PROFILING_OUTPUT_PPROF", dir.path().join("p"));
        std::env::set_var("DD_PROFILING_LOCK_ENABLED", &value);
        logs::start();
        let handle = start_from_env().unwrap_or_else(|| panic!("LOCK_ENABLED {kind}: not started"));
        handle.stop();
        let warnings = logs::at(log::Level::Warn);
        if unset {
            assert!(warnings.is_empty(), "{kind}: {warnings:?}");
        } else {
            assert_eq!(warnings.len(), 1, "{kind}: {warnings:?}");
            assert!(
                warnings[0].contains("DD_PROFILING_LOCK_ENABLED"),
                "{}",
                warnings[0]
            );
        }
    }
    clear_env();
}

#[test]
fn try_start_from_env_says_why_no_profiler_runs() {
    let _turn = serial();
    clear_env();
    assert!(matches!(try_start_from_env(), Err(NotStarted::Disabled)));
    std::env::set_var("DD_PROFILING_ENABLED", "true");
    std::env::set_var("DD_PROFILING_LOCK_ENABLED", "no");
    assert!(matches!(try_start_from_env(), Err(NotStarted::Disabled)));

    clear_env();
    std::env::set_var("DD_PROFILING_ENABLED", "maybe");
    match try_start_from_env() {
        Err(NotStarted::Invalid(e)) => assert_eq!(
            (e.name.as_str(), e.value.as_str()),
            ("DD_PROFILING_ENABLED", "maybe")
        ),
        other => panic!("{other:?}"),
    }

    // On, but a profiler runs already.
    let dir = tempfile::tempdir().unwrap();
    let running = Profiler::builder()
        .ignore_env()
        .output_pprof(dir.path().join("first"))
        .start()
        .unwrap();
    clear_env();
    std::env::set_var("DD_PROFILING_ENABLED", "1");
    std::env::set_var("DD_PROFILING_OUTPUT_PPROF", dir.path().join("second"));
    assert!(matches!(
        try_start_from_env(),
        Err(NotStarted::Failed(StartError::AlreadyRunning))
    ));
    running.stop();
    let second = try_start_from_env().expect("starts once the first has stopped");
    second.stop();
    clear_env();
}
