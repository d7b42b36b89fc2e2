//! `stress/src/bin/run_stress.rs` and the shipped configurations: the file holds
//! the reference suite's entries and parameters; `BENCHMARK_CONFIGS` selects
//! by exact name and refuses unknown ones; each selected entry runs in its
//! own process, with and without the profiler, and lands in the results
//! directory and the summary.

mod stress_support;

use std::collections::BTreeSet;

use lockprof::read::{profile_files, Pick, ProfileFileName};
use lockprof_stress::config;

use stress_support::{command, program, run_ok};

fn int(entry: &config::Entry, key: &str) -> i64 {
    entry
        .params
        .iter()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| v.as_integer())
        .unwrap_or_else(|| panic!("{}: no integer {key}", entry.name))
}

/// A configuration's name, scenario type and some of its parameters.
type Expected = (&'static str, &'static str, &'static [(&'static str, i64)]);

#[test]
fn shipped_configurations_are_the_reference_suite() {
    let entries = config::parse(config::BUILTIN).expect("the shipped file parses");
    // name, scenario, and the parameters that tell the entries apart.
    let expected: &[Expected] = &[
        (
            "high-contention-10-threads",
            "high_contention",
            &[
                ("num_threads", 10),
                ("num_locks", 2),
                ("operations_per_thread", 1000),
                ("hold_time_ms", 5),
                ("think_time_ms", 1),
            ],
        ),
        (
            "high-contention-50-threads",
            "high_contention",
            &[("num_threads", 50), ("num_locks", 2)],
        ),
        (
            "high-contention-100-threads",
            "high_contention",
            &[("num_threads", 100), ("num_locks", 2)],
        ),
        (
            "lock-hierarchy-simple",
            "lock_hierarchy",
            &[
                ("num_threads", 20),
                ("hierarchy_depth", 3),
                ("operations_per_thread", 500),
                ("hold_time_ms", 2),
            ],
        ),
        (
            "lock-hierarchy-deep",
            "lock_hierarchy",
            &[("num_threads", 30), ("hierarchy_depth", 5)],
        ),
        (
            "lock-hierarchy-complex",
            "lock_hierarchy",
            &[("num_threads", 40), ("hierarchy_depth", 7)],
        ),
        (
            "high-frequency-baseline",
            "high_frequency",
            &[
                ("num_threads", 20),
                ("num_locks", 10),
                ("operations_per_thread", 5000),
                ("hold_time_ms", 0),
                ("think_time_ms", 0),
            ],
        ),
        (
            "high-frequency-intense",
            "high_frequency",
            &[("num_threads", 30), ("operations_per_thread", 10000)],
        ),
        (
            "high-frequency-extreme",
            "high_frequency",
            &[("num_threads", 50), ("operations_per_thread", 20000)],
        ),
        (
            "mixed-primitives",
            "mixed_primitives",
            &[("num_threads", 25), ("operations_per_thread", 1000)],
        ),
        (
            "mixed-primitives-heavy",
            "mixed_primitives",
            &[("num_threads", 50), ("operations_per_thread", 2000)],
        ),
        (
            "long-held-locks",
            "long_held_locks",
            &[
                ("num_threads", 10),
                ("num_locks", 5),
                ("operations_per_thread", 100),
                ("hold_time_ms", 100),
                ("variance_ms", 50),
            ],
        ),
        (
            "long-held-locks-extreme",
            "long_held_locks",
            &[("num_threads", 20), ("hold_time_ms", 500), ("variance_ms", 200)],
        ),
        (
            "producer-consumer",
            "producer_consumer",
            &[
                ("num_producers", 10),
                ("num_consumers", 10),
                ("queue_size", 100),
                ("items_per_producer", 1000),
                ("processing_time_ms", 1),
            ],
        ),
        (
            "producer-consumer-heavy",
            "producer_consumer",
            &[
                ("num_producers", 25),
                ("num_consumers", 25),
                ("items_per_producer", 2000),
            ],
        ),
        (
            "reader-writer",
            "reader_writer",
            &[
                ("num_readers", 30),
                ("num_writers", 5),
                ("operations_per_thread", 500),
                ("read_time_ms", 10),
                ("write_time_ms", 50),
            ],
        ),
        (
            "reader-writer-heavy",
            "reader_writer",
            &[
                ("num_readers", 100),
                ("num_writers", 10),
                ("operations_per_thread", 1000),
            ],
        ),
        (
            "memory-pressure",
            "memory_pressure",
            &[
                ("num_threads", 20),
                ("num_locks", 10),
                ("operations_per_thread", 1000),
                ("allocate_mb_per_op", 1),
                ("hold_time_ms", 10),
            ],
        ),
        (
            "memory-pressure-heavy",
            "memory_pressure",
            &[("num_threads", 40), ("allocate_mb_per_op", 5)],
        ),
        (
            "deadlock-prone",
            "deadlock_prone",
            &[
                ("num_threads", 20),
                ("num_locks", 5),
                ("operations_per_thread", 500),
                ("timeout_ms", 100),
            ],
        ),
        (
            "async-stress",
            "async_stress",
            &[
                ("num_tasks", 100),
                ("num_locks", 10),
                ("operations_per_task", 500),
                ("async_sleep_ms", 1),
            ],
        ),
    ];
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    let expected_names: Vec<&str> = expected.iter().map(|e| e.0).collect();
    assert_eq!(names, expected_names);
    for (entry, (name, scenario, params)) in entries.iter().zip(expected) {
        assert_eq!(entry.scenario_type, *scenario, "{name}");
        for (key, value) in *params {
            assert_eq!(int(entry, key), *value, "{name}.{key}");
        }
    }
    let mixed = &entries[9];
    for flag in ["use_rlock", "use_condition", "use_semaphore", "use_event"] {
        let on = mixed
            .params
            .iter()
            .find(|(k, _)| k == flag)
            .and_then(|(_, v)| v.as_bool());
        assert_eq!(on, Some(true), "mixed-primitives.{flag}");
    }
    let deadlock = &entries[19];
    assert!(deadlock
        .args()
        .windows(2)
        .any(|w| w == ["--randomize-order", "true"]));
}

#[test]
fn unknown_names_in_benchmark_configs_are_refused_with_the_valid_ones() {
    let results = tempfile::tempdir().expect("tempdir");
    let output = command("run_stress")
        .arg(results.path())
        .env("BENCHMARK_CONFIGS", "high-contention-10-threads,no-such-config")
        .output()
        .expect("start run_stress");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no-such-config"), "{stderr}");
    assert!(
        !stderr.contains("no-such-config,"),
        "only unknown names are listed as unknown: {stderr}"
    );
    assert!(
        stderr.contains("valid names: high-contention-10-threads, "),
        "{stderr}"
    );
    assert!(stderr.contains("deadlock-prone"), "{stderr}");
    assert!(
        std::fs::read_dir(results.path()).expect("dir").next().is_none(),
        "nothing should have run"
    );
}

#[test]
fn selected_configs_run_each_in_a_process_profiled_and_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config_path = dir.path().join("tiny.toml");
    std::fs::write(
        &config_path,
        r#"
[tiny-frequency]
scenario_type = "high_frequency"
num_threads = 2
num_locks = 4
operations_per_thread = 500

[tiny-contention]
scenario_type = "high_contention"
num_threads = 3
num_locks = 2
operations_per_thread = 10
hold_time_ms = 1
think_time_ms = 0

[not-selected]
scenario_type = "long_held_locks"
num_threads = 50
hold_time_ms = 1000
"#,
    )
    .expect("write the config");
    let results = dir.path().join("results");
    let output = run_ok(
        command("run_stress")
            .arg(&results)
            .arg("--config")
            .arg(&config_path)
            .args(["--profiling", "both", "--stress-bin"])
            .arg(program("lock_profiler_stress"))
            .env("BENCHMARK_CONFIGS", "tiny-contention,tiny-frequency")
            .env("DD_PROFILING_CAPTURE_PCT", "100"),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);

    // Progress lines, in the order BENCHMARK_CONFIGS gives, off before on.
    let progress: Vec<&str> = stdout.lines().filter(|l| l.starts_with('[')).collect();
    assert_eq!(progress.len(), 4, "{stdout}");
    assert!(
        progress[0].starts_with("[1/4] tiny-contention (profiling off) | elapsed "),
        "{stdout}"
    );
    assert!(
        progress[1].starts_with("[2/4] tiny-contention (profiling on)"),
        "{stdout}"
    );
    assert!(
        progress[3].starts_with("[4/4] tiny-frequency (profiling on)"),
        "{stdout}"
    );
    assert!(progress.iter().all(|l| l.contains(" | ETA ")), "{stdout}");
    assert!(!stdout.contains("not-selected"), "{stdout}");

    // Summary table with the overhead column.
    assert!(stdout.contains("Summary (2 configurations"), "{stdout}");
    let row = stdout
        .lines()
        .find(|l| l.starts_with("tiny-frequency "))
        .unwrap_or_else(|| panic!("no summary row:\n{stdout}"));
    assert!(row.trim_end().ends_with('x'), "overhead ratio expected: {row}");

    for name in ["tiny-contention", "tiny-frequency"] {
        for suffix in ["", ".profiling-off"] {
            let path = results.join(format!("results.{name}{suffix}.json"));
            let json: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&path).expect("a result file")).expect("JSON");
            assert_eq!(json["profiling"], suffix.is_empty(), "{}", path.display());
            assert!(json["total_operations"].as_u64() > Some(0));
        }
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(results.join("summary.json")).expect("summary.json"))
            .expect("JSON");
    let rows = summary.as_array().expect("rows");
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter()
            .all(|r| r["overhead"].as_f64().is_some_and(|o| o > 0.0)),
        "{summary}"
    );

    // One profiled process per configuration: one pid per profile file.
    let pids: BTreeSet<u32> = profile_files(&results.join("profiles"), Pick::All)
        .expect("profiles")
        .iter()
        .filter_map(|p| ProfileFileName::parse(p.file_name()?.to_str()?).map(|n| n.pid))
        .collect();
    assert_eq!(pids.len(), 2, "{pids:?}");
}
