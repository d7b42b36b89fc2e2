//! `DD_API_KEY` never appears in anything the profiler writes when uploading
//! to an agent: logs, `Debug` output of the builder, settings and handle,
//! errors, stats, and the requests (headers, event.json, profile) the agent
//! receives. (Agentless uploads carry it in their `DD-API-KEY` header only:
//! see the exporter's unit tests.)

mod common;
mod upload_common;

use std::time::Duration;

use common::logs;
use lockprof::Profiler;
use upload_common::{workload, Reply, ScriptedAgent};

const KEY: &str = "f00dfeedf00dfeedf00dfeedf00dfeed";

#[test]
fn the_api_key_appears_in_nothing_written_to_an_agent_or_the_logs() {
    let _turn = common::serial();
    logs::start();
    // The first upload fails (500), so error paths are logged too.
    let agent = ScriptedAgent::start(|n| Reply::Status(if n == 0 { 500 } else { 202 }));
    std::env::set_var("DD_API_KEY", KEY);
    let (builder, errors) = Profiler::builder().with_env();
    std::env::remove_var("DD_API_KEY");
    assert!(errors.is_empty(), "{errors:?}");
    let builder = builder
        .agent_url(agent.url())
        .capture_pct(100.0)
        .flush_interval(Duration::from_secs(3600));
    let mut written = format!("{builder:?}\n{:?}\n", builder.settings());
    let handle = builder.start().unwrap();
    written += &format!("{handle:?}\n{}\n", handle.output());
    workload(50);
    handle.flush();
    workload(50);
    let stats = handle.stop();
    written += &format!("{stats:?}\n");
    written += &logs::all();
    let requests = agent.requests();
    assert!(!requests.is_empty(), "the agent received nothing");
    for r in &requests {
        written += &r.head;
        written += &String::from_utf8_lossy(&r.body);
    }
    assert!(!written.is_empty());
    assert!(
        !written.contains(KEY) && !written.to_lowercase().contains("dd-api-key"),
        "the API key leaked:\n{written}"
    );
}
