//! End to end against Datadog's own test agent (`ddapm-test-agent`, PyPI):
//! a small service traced by Datadog's Rust tracer (`datadog-opentelemetry`,
//! with lockprof's `ProfilingSpanProcessor`) handles requests that take
//! named locks, in root spans, in child spans and in tokio tasks; traces and
//! profiles both go to the agent. Every lock sample taken inside a request
//! carries the `span id` and `local root span id` of a span the tracer sent,
//! and the `trace endpoint` of its root span (its resource, for a `web`
//! root); a sample outside any span carries none of them; `event.json`
//! counts the requests per endpoint. Everything is captured (100 %), so
//! every acquisition is one event and the counts are exact.

mod upload_common;
use upload_common as common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use common::parse_multipart;
use common::test_agent::{header, TestAgent};
use datadog_opentelemetry::configuration::Config;
use lockprof::read::{LockProfile, LockSample};
use lockprof::{named, ProfiledAsyncMutex, ProfiledMutex, Profiler, ProfilingSpanProcessor};
use opentelemetry::context::FutureExt;
use opentelemetry::trace::{SpanKind, TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use serde_json::Value;

// Taken in every request's root span, and outside any span.
named!(static E2E_ACCOUNTS: ProfiledMutex<u64> = ProfiledMutex::new(0));
// Taken only in a child span of each request.
named!(static E2E_CACHE: ProfiledMutex<u64> = ProfiledMutex::new(0));
// Never taken inside a span.
named!(static E2E_HOUSEKEEPING: ProfiledMutex<u64> = ProfiledMutex::new(0));

const THREADS: usize = 3;
const REQUESTS_PER_THREAD: usize = 8;
const TASKS: usize = 6;
const OUTSIDE: usize = 5;

#[derive(Clone, Copy, Debug)]
enum Route {
    /// A server span named by its HTTP method and route.
    User,
    /// A server span with a resource of its own.
    Checkout,
    /// A root span that serves no request (not `web`): no endpoint.
    Nightly,
}

const ROUTES: [Route; 3] = [Route::User, Route::Checkout, Route::Nightly];

/// One request: a root span, a lock in it, a child span, a lock in that.
fn handle(tracer: &impl Tracer<Span: Send + Sync + 'static>, route: Route) {
    let (name, kind, attributes) = match route {
        Route::User => (
            "http.request",
            SpanKind::Server,
            vec![
                KeyValue::new("http.request.method", "GET"),
                KeyValue::new("http.route", "/users/{id}"),
            ],
        ),
        Route::Checkout => (
            "http.request",
            SpanKind::Server,
            vec![
                KeyValue::new("resource.name", "checkout"),
                KeyValue::new("http.request.method", "POST"),
            ],
        ),
        Route::Nightly => ("nightly.job", SpanKind::Internal, vec![]),
    };
    let root = tracer
        .span_builder(name)
        .with_kind(kind)
        .with_attributes(attributes)
        .start(tracer);
    let cx = Context::current_with_span(root);
    {
        let _in_request = cx.clone().attach();
        *E2E_ACCOUNTS.lock().unwrap() += 1;
        tracer.in_span("load.account", |_| {
            *E2E_CACHE.lock().unwrap() += 1;
        });
    }
    cx.span().end();
}

/// Requests served by tokio tasks on two worker threads, each polled in
/// its own span's context, holding an async lock across an await.
fn async_requests(tracer: &impl Tracer<Span: Send + Sync + 'static>) {
    named!(let e2e_async_lock = Arc::new(ProfiledAsyncMutex::new(0u64)));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    rt.block_on(async {
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let root = tracer
                    .span_builder("http.request")
                    .with_kind(SpanKind::Server)
                    .with_attributes([
                        KeyValue::new("http.request.method", "GET"),
                        KeyValue::new("http.route", "/async/{n}"),
                    ])
                    .start(tracer);
                let cx = Context::current_with_span(root);
                let lock = Arc::clone(&e2e_async_lock);
                tokio::spawn(
                    async move {
                        {
                            let mut guard = lock.lock().await;
                            tokio::task::yield_now().await;
                            *guard += 1;
                        }
                        Context::current().span().end();
                    }
                    .with_context(cx),
                )
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
}

/// A span as the agent received it.
#[derive(Debug, Clone)]
struct SentSpan {
    /// Datadog's resource: an OpenTelemetry span's name, unless named
    /// otherwise.
    resource: String,
    parent_id: u64,
    /// The root span of its trace (its local root: no trace here comes
    /// from another service).
    root: u64,
}

/// A root span as the agent received it.
#[derive(Debug, Clone)]
struct SentRoot {
    resource: String,
    span_type: String,
}

/// The agent's traces: every span by id, every root span by id.
fn sent_spans(traces: &[Vec<Value>]) -> (HashMap<u64, SentSpan>, HashMap<u64, SentRoot>) {
    let (mut spans, mut roots) = (HashMap::new(), HashMap::new());
    for trace in traces {
        // A root span has no parent id (or 0).
        let parent = |s: &Value| s["parent_id"].as_u64().unwrap_or(0);
        let roots_of_trace: Vec<&Value> = trace.iter().filter(|s| parent(s) == 0).collect();
        assert_eq!(roots_of_trace.len(), 1, "one root per trace: {trace:?}");
        let root = roots_of_trace[0];
        let root_id = root["span_id"].as_u64().unwrap();
        roots.insert(
            root_id,
            SentRoot {
                resource: root["resource"].as_str().unwrap().to_owned(),
                span_type: root["type"].as_str().unwrap_or("").to_owned(),
            },
        );
        for s in trace {
            spans.insert(
                s["span_id"].as_u64().unwrap(),
                SentSpan {
                    resource: s["resource"].as_str().unwrap().to_owned(),
                    parent_id: parent(s),
                    root: root_id,
                },
            );
        }
    }
    (spans, roots)
}

/// Polls the agent until it has `n` traces.
fn wait_for_traces(agent: &TestAgent, n: usize) -> Vec<Vec<Value>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let traces = agent.traces();
        if traces.len() >= n {
            return traces;
        }
        assert!(
            Instant::now() < deadline,
            "the agent has {} of {n} traces after 60 s",
            traces.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The uploads' event.json files and profiles, merged into one.
fn uploads(agent: &TestAgent) -> (Vec<Value>, LockProfile) {
    let requests = agent.profile_requests();
    assert!(!requests.is_empty(), "no profile reached the agent");
    let mut events = Vec::new();
    let mut merged: Option<LockProfile> = None;
    for req in &requests {
        let body = base64::engine::general_purpose::STANDARD
            .decode(req["body"].as_str().unwrap())
            .unwrap();
        let parts = parse_multipart(header(req, "Content-Type").unwrap(), &body);
        events.push(serde_json::from_slice(&parts[0].body).unwrap());
        let profile = LockProfile::from_bytes(&parts[1].body).unwrap();
        match &mut merged {
            Some(m) => m.merge(profile),
            None => merged = Some(profile),
        }
    }
    (events, merged.unwrap())
}

/// A sample's span labels: span id, local root span id, trace endpoint.
fn span_labels(s: &LockSample) -> (Option<u64>, Option<u64>, Option<&str>) {
    // pprof's numbers are signed: Datadog writes the ids' 64 bits as they are.
    (
        s.label_num("span id").map(|n| n as u64),
        s.label_num("local root span id").map(|n| n as u64),
        s.label_str("trace endpoint"),
    )
}

/// The endpoint Datadog gives a sample taken under `root`: the root's
/// resource when it served a request.
fn endpoint_of(root: &SentRoot) -> Option<&str> {
    (root.span_type == "web").then_some(root.resource.as_str())
}

#[test]
fn lock_samples_carry_the_span_of_their_request() {
    let agent = TestAgent::start();
    let url = format!("http://{}", agent.addr);
    let mut config = Config::builder();
    config
        .set_service("lockprof-trace-e2e".to_owned())
        .set_env("test".to_owned())
        .set_trace_agent_url(url.clone())
        .set_telemetry_enabled(false)
        .set_remote_config_enabled(false);
    let (tracer_provider, _propagator) = datadog_opentelemetry::tracing()
        .with_config(config.build())
        .with_span_processor(ProfilingSpanProcessor::new())
        .init_local();
    let tracer = tracer_provider.tracer("lockprof-e2e");
    let profiler = Profiler::builder()
        .ignore_env()
        .capture_pct(100.0)
        .flush_interval(Duration::from_secs(600))
        .service("lockprof-trace-e2e")
        .agent_url(url.as_str())
        .upload(true)
        .start()
        .unwrap();

    for _ in 0..OUTSIDE {
        *E2E_ACCOUNTS.lock().unwrap() += 1;
        *E2E_HOUSEKEEPING.lock().unwrap() += 1;
    }
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let tracer = &tracer;
            s.spawn(move || {
                for i in 0..REQUESTS_PER_THREAD {
                    handle(tracer, ROUTES[(t + i) % ROUTES.len()]);
                    *E2E_HOUSEKEEPING.lock().unwrap() += 1;
                }
            });
        }
    });
    async_requests(&tracer);

    let stats = profiler.stop();
    assert_eq!(
        stats.upload.as_ref().map(|u| (u.sent, u.failed)),
        Some((1, 0)),
        "{stats:?}"
    );
    tracer_provider
        .shutdown_with_timeout(Duration::from_secs(10))
        .expect("the tracer flushes its traces");

    let requests = THREADS * REQUESTS_PER_THREAD + TASKS;
    let traces = wait_for_traces(&agent, requests);
    assert_eq!(traces.len(), requests, "one trace per request");
    let (spans, roots) = sent_spans(&traces);
    let (events, profile) = uploads(&agent);

    // Which spans each lock's samples carry, and how many acquisitions.
    let mut acquired_in: HashMap<(&str, Option<u64>), i64> = HashMap::new();
    let mut seen_roots: HashMap<u64, usize> = HashMap::new();
    for s in &profile.samples {
        let Some(lock) = s.lock_name.as_deref() else {
            continue;
        };
        let lock = lock.rsplit(':').next().unwrap();
        if !lock.starts_with("E2E_") && !lock.starts_with("e2e_") {
            continue;
        }
        let (span_id, root_id, endpoint) = span_labels(s);
        *acquired_in.entry((lock, span_id)).or_default() += s.acquire;
        if lock == "E2E_HOUSEKEEPING" || span_id.is_none() {
            assert_eq!(
                (span_id, root_id, endpoint),
                (None, None, None),
                "a sample outside any span carries no span labels: {s:?}"
            );
            continue;
        }
        let span_id = span_id.unwrap();
        let span = spans
            .get(&span_id)
            .unwrap_or_else(|| panic!("{lock}: span {span_id} is not one the tracer sent: {s:?}"));
        let root = &roots[&span.root];
        assert_eq!(
            root_id,
            Some(span.root),
            "{lock}: local root span id of span {span:?}"
        );
        assert_eq!(
            endpoint,
            endpoint_of(root),
            "{lock}: trace endpoint, root {root:?}"
        );
        match lock {
            "E2E_ACCOUNTS" | "e2e_async_lock" => assert_eq!(span.parent_id, 0, "{lock} in a root span"),
            "E2E_CACHE" => assert_eq!(span.resource, "load.account", "{lock} in the child span"),
            other => panic!("unexpected lock {other}"),
        }
        *seen_roots.entry(span.root).or_default() += 1;
    }

    // Every request's root and child span took its locks once, at exact
    // counts; what ran outside any span is counted without a span.
    assert_eq!(
        seen_roots.len(),
        roots.len(),
        "every request's locks are in the profile"
    );
    for (&root_id, root) in &roots {
        let child = spans
            .iter()
            .find(|(_, s)| s.root == root_id && s.parent_id == root_id)
            .map(|(&id, _)| id);
        if root.resource == "GET /async/{n}" {
            assert_eq!(acquired_in.get(&("e2e_async_lock", Some(root_id))), Some(&1));
            assert_eq!(child, None);
        } else {
            assert_eq!(
                acquired_in.get(&("E2E_ACCOUNTS", Some(root_id))),
                Some(&1),
                "{root:?}"
            );
            assert_eq!(acquired_in.get(&("E2E_CACHE", child)), Some(&1), "{root:?}");
        }
    }
    assert_eq!(acquired_in.get(&("E2E_ACCOUNTS", None)), Some(&(OUTSIDE as i64)));
    assert_eq!(
        acquired_in.get(&("E2E_HOUSEKEEPING", None)),
        Some(&((OUTSIDE + THREADS * REQUESTS_PER_THREAD) as i64))
    );

    // The roots' resources are what the tracer sent: their endpoints are
    // named as Datadog names them, and the nightly job is no request.
    let mut expected_counts: BTreeMap<String, u64> = BTreeMap::new();
    for root in roots.values() {
        if let Some(endpoint) = endpoint_of(root) {
            *expected_counts.entry(endpoint.to_owned()).or_default() += 1;
        }
    }
    let per_route = (THREADS * REQUESTS_PER_THREAD / ROUTES.len()) as u64;
    assert_eq!(
        expected_counts,
        BTreeMap::from([
            ("GET /async/{n}".to_owned(), TASKS as u64),
            ("GET /users/{id}".to_owned(), per_route),
            ("checkout".to_owned(), per_route),
        ]),
        "the tracer's roots: {roots:?}"
    );
    assert!(roots
        .values()
        .any(|r| r.resource == "nightly.job" && r.span_type != "web"));
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for event in &events {
        if let Some(map) = event["endpoint_counts"].as_object() {
            for (endpoint, n) in map {
                *counts.entry(endpoint.clone()).or_default() += n.as_u64().unwrap();
            }
        }
    }
    assert_eq!(counts, expected_counts, "event.json's endpoint_counts");
}
