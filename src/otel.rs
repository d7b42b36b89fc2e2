//! Trace correlation with an OpenTelemetry tracer (feature
//! `opentelemetry`), such as Datadog's Rust tracer, `datadog-opentelemetry`.
//!
//! Datadog links a profile's samples to traces by three labels, written by
//! its Python profiler (and libdatadog) as: `span id` and `local root span
//! id`, numbers (the 64-bit ids as pprof's signed numbers), and `trace
//! endpoint`, the local root span's resource when that span served a
//! request (its type is `web`). This module supplies them:
//!
//! - **The span** is OpenTelemetry's current span on the thread building a
//!   sampled event ([`Context::map_current`]): for an async lock, the span of
//!   the task that polled it, where the task runs in its context
//!   (`FutureExt::with_context`). Datadog's span id is the OpenTelemetry
//!   span id's 8 bytes, big-endian, as datadog-opentelemetry converts it.
//! - **The local root** is not in OpenTelemetry's API, and
//!   datadog-opentelemetry keeps its own record of it private (0.6 publishes
//!   it only to out-of-process readers, behind its experimental
//!   `otel-thread-ctx` feature). So [`ProfilingSpanProcessor`] keeps a table
//!   of live traces, by trace id, as datadog-opentelemetry's span processor
//!   does: a span whose parent is remote or absent is its trace's local
//!   root, and the first one stays.
//! - **The endpoint** is the root's resource, final only when the root span
//!   ends, after the lock samples taken under it: the processor sets it
//!   then, and the profile reads it at its flush (see
//!   [`record::span`](crate::record::span)). The resource is named as
//!   datadog-opentelemetry 0.6 names it for the agent (the agent's
//!   `otel_util.go` rules, which its `get_otel_resource_v2` follows), and a
//!   root is a request when its type is `web`: a `span.type` attribute of
//!   `web`, or a server span without one.
//!
//! Cost: nothing on an unsampled acquisition. A sampled event reads the
//! context's thread-local and looks its trace up in one of 32 shards of the
//! table, with a bounded `try_lock`: it never blocks, and a shard busy past
//! the bound costs that event its local root and endpoint, not the event.
//! Each recording span's start and end take its shard's lock briefly; the
//! SDK clones a span's data for each processor once there are several.

use std::borrow::Cow;
use std::num::NonZeroU64;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use opentelemetry::trace::{Span as _, SpanContext, SpanKind, TraceContextExt};
use opentelemetry::{Context, Key, KeyValue, Value};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};
use opentelemetry_sdk::Resource;
use parking_lot::Mutex;

use crate::record::span::{self, LocalRoot, SpanLabels};
use crate::util::fxhash::FxHashMap;

/// Links lock samples to the spans of an OpenTelemetry tracer: install it
/// in the tracer provider, and every sampled lock event taken inside a span
/// carries the labels Datadog links profiles to traces by (`span id`,
/// `local root span id`, `trace endpoint`), and uploads count requests per
/// endpoint.
///
/// With Datadog's Rust tracer (`datadog-opentelemetry` 0.6; the test
/// `lock_samples_carry_the_span_of_their_request` runs this against
/// Datadog's test agent):
///
/// ```ignore
/// let tracer_provider = datadog_opentelemetry::tracing()
///     .with_span_processor(lockprof::ProfilingSpanProcessor::new())
///     .init();
/// let profiler = lockprof::start_from_env();
/// ```
///
/// Any OpenTelemetry SDK tracer provider (0.33) takes it the same way:
///
/// ```no_run
/// let tracer_provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
///     .with_span_processor(lockprof::ProfilingSpanProcessor::new())
///     .build();
/// # drop(tracer_provider);
/// ```
///
/// Spans are seen through OpenTelemetry's current context: a span made
/// current (`Tracer::in_span`, `Context::attach`, `FutureExt::with_context`
/// for a task) labels the locks taken under it.
#[derive(Debug, Clone)]
pub struct ProfilingSpanProcessor {
    /// The tracer provider's resource: its attributes name spans before
    /// the span's own, as the Datadog agent's rules read them.
    resource: Option<Resource>,
}

impl ProfilingSpanProcessor {
    /// A processor that links the lock samples of this process to its
    /// tracer's spans. Every processor shares one table of live traces.
    pub fn new() -> Self {
        // Made here, not by the first sampled event, which may hold a
        // user's lock and must not allocate.
        LazyLock::force(&TRACES);
        span::set_provider(current_span);
        ProfilingSpanProcessor { resource: None }
    }

    /// The endpoint a local root span that ended as `span` stands for, or
    /// `None` if it served no request.
    fn endpoint(&self, span: &SpanData) -> Option<Arc<str>> {
        let attrs = Attributes {
            resource: self.resource.as_ref(),
            span,
        };
        attrs.is_web().then(|| Arc::from(attrs.resource_name()))
    }
}

impl Default for ProfilingSpanProcessor {
    fn default() -> Self {
        Self::new()
    }
}

impl SpanProcessor for ProfilingSpanProcessor {
    fn on_start(&self, span: &mut Span, parent: &Context) {
        let context = span.span_context();
        let (Some(trace), Some(span_id)) = (trace_id(context), span_id(context)) else {
            return;
        };
        // As datadog-opentelemetry decides it.
        let local_root = !parent.has_active_span() || parent.span().span_context().is_remote();
        span::unrecorded(|| TRACES.start(trace, span_id, local_root));
    }

    fn on_end(&self, span: SpanData) {
        let (Some(trace), Some(span_id)) = (trace_id(&span.span_context), span_id(&span.span_context)) else {
            return;
        };
        if let Some(root) = span::unrecorded(|| TRACES.end(trace, span_id)) {
            root.end(self.endpoint(&span));
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.resource = Some(resource.clone());
    }
}

/// The span of the sampled event being built: the [`span::Provider`].
fn current_span() -> Option<SpanLabels> {
    Context::map_current(|cx| {
        if !cx.has_active_span() {
            return None;
        }
        let span = cx.span();
        let context = span.span_context();
        // A remote parent is another process's span.
        if context.is_remote() {
            return None;
        }
        Some(SpanLabels {
            span_id: span_id(context)?,
            root: TRACES.root_of(trace_id(context)?),
        })
    })
}

/// Datadog's span id: the OpenTelemetry id's bytes, big-endian.
fn span_id(context: &SpanContext) -> Option<NonZeroU64> {
    NonZeroU64::new(u64::from_be_bytes(context.span_id().to_bytes()))
}

fn trace_id(context: &SpanContext) -> Option<u128> {
    Some(u128::from_be_bytes(context.trace_id().to_bytes())).filter(|&id| id != 0)
}

/// The live traces of this process, by trace id.
static TRACES: LazyLock<Traces> = LazyLock::new(Traces::new);

const SHARDS: usize = 32;

/// Tries at a busy shard before a sampled event goes without its local
/// root: the holder only inserts or removes one entry.
const LOOKUP_TRIES: u32 = 1000;

struct Traces {
    shards: Box<[Shard]>,
}

/// One shard on a cache line of its own.
#[repr(align(64))]
#[derive(Default)]
struct Shard(Mutex<FxHashMap<u128, Trace>>);

/// A live trace: its local root, and its spans still open in this process.
struct Trace {
    root: Arc<LocalRoot>,
    open: u32,
}

impl Traces {
    fn new() -> Traces {
        Traces {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
        }
    }

    fn shard(&self, trace: u128) -> &Shard {
        // The low bits are random in every trace id, 64- or 128-bit.
        &self.shards[(trace as usize) % self.shards.len()]
    }

    /// A span started. A local root opens its trace; a span of a trace
    /// opened before this table saw it is ignored.
    fn start(&self, trace: u128, span_id: NonZeroU64, local_root: bool) {
        let root = local_root.then(|| Arc::new(LocalRoot::new(span_id)));
        let mut traces = self.shard(trace).0.lock();
        match (traces.get_mut(&trace), root) {
            // A child, or a second local root of the trace (the trace came
            // back through another service): the first root stays.
            (Some(t), _) => t.open = t.open.saturating_add(1),
            (None, Some(root)) => {
                traces.insert(trace, Trace { root, open: 1 });
            }
            (None, None) => {}
        }
    }

    /// A span ended: returns its trace's local root if it was that span.
    /// The trace is forgotten when its last open span ends.
    fn end(&self, trace: u128, span_id: NonZeroU64) -> Option<Arc<LocalRoot>> {
        let mut traces = self.shard(trace).0.lock();
        let t = traces.get_mut(&trace)?;
        t.open = t.open.saturating_sub(1);
        let root = (t.root.id() == span_id).then(|| Arc::clone(&t.root));
        if t.open == 0 {
            traces.remove(&trace);
        }
        root
    }

    /// The local root of `trace`: never blocks, never allocates.
    fn root_of(&self, trace: u128) -> Option<Arc<LocalRoot>> {
        let shard = &self.shard(trace).0;
        for _ in 0..LOOKUP_TRIES {
            if let Some(traces) = shard.try_lock() {
                return traces.get(&trace).map(|t| Arc::clone(&t.root));
            }
            std::hint::spin_loop();
        }
        None
    }
}

/// A finished span's attributes as the Datadog agent reads them when it
/// names a span: the tracer provider's resource first, then the span's.
struct Attributes<'a> {
    resource: Option<&'a Resource>,
    span: &'a SpanData,
}

impl Attributes<'_> {
    /// The first of `keys` that is set: a non-empty resource attribute, or
    /// the span's attribute even if empty; `""` for none.
    fn first(&self, keys: &[&'static str]) -> Cow<'_, str> {
        for &key in keys {
            let from_resource = self
                .resource
                .and_then(|r| r.get_ref(&Key::from_static_str(key)))
                .map(Value::as_str)
                .filter(|v| !v.is_empty());
            if let Some(v) = from_resource {
                return v;
            }
            if let Some(kv) = self
                .span
                .attributes
                .iter()
                .find(|kv: &&KeyValue| kv.key.as_str() == key)
            {
                return kv.value.as_str();
            }
        }
        Cow::Borrowed("")
    }

    /// Whether the span's Datadog type is `web`.
    fn is_web(&self) -> bool {
        let span_type = self.first(&["span.type"]);
        if span_type.is_empty() {
            self.span.span_kind == SpanKind::Server
        } else {
            span_type == "web"
        }
    }

    /// The span's Datadog resource name.
    fn resource_name(&self) -> String {
        let joined = |a: Cow<'_, str>, b: Cow<'_, str>| {
            if b.is_empty() {
                a.into_owned()
            } else {
                format!("{a} {b}")
            }
        };
        let name = self.first(&["resource.name"]);
        if !name.is_empty() {
            return name.into_owned();
        }
        let method = self.first(&["http.request.method", "http.method"]);
        if !method.is_empty() {
            let method = if method == "_OTHER" {
                Cow::Borrowed("HTTP")
            } else {
                method
            };
            if self.span.span_kind == SpanKind::Server {
                return joined(method, self.first(&["http.route"]));
            }
            return method.into_owned();
        }
        let operation = self.first(&["messaging.operation.type", "messaging.operation"]);
        if !operation.is_empty() {
            return joined(
                operation,
                self.first(&["messaging.destination", "messaging.destination.name"]),
            );
        }
        let rpc = self.first(&["rpc.method"]);
        if !rpc.is_empty() {
            return joined(rpc, self.first(&["rpc.service"]));
        }
        let graphql = self.first(&["graphql.operation.type"]);
        if !graphql.is_empty() {
            return joined(graphql, self.first(&["graphql.operation.name"]));
        }
        if !self.first(&["db.system.name", "db.system"]).is_empty() {
            for key in ["db.statement", "db.query.text"] {
                let statement = self.first(&[key]);
                if !statement.is_empty() {
                    return statement.into_owned();
                }
            }
        }
        self.span.name.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanId, Status, TraceFlags, TraceId, TraceState};
    use opentelemetry::InstrumentationScope;
    use std::time::SystemTime;

    fn span_data(name: &'static str, kind: SpanKind, attributes: Vec<KeyValue>) -> SpanData {
        SpanData {
            span_context: SpanContext::new(
                TraceId::from(7u128),
                SpanId::from(9u64),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: kind,
            name: Cow::Borrowed(name),
            start_time: SystemTime::UNIX_EPOCH,
            end_time: SystemTime::UNIX_EPOCH,
            attributes,
            dropped_attributes_count: 0,
            events: Default::default(),
            links: Default::default(),
            status: Status::Unset,
            instrumentation_scope: InstrumentationScope::builder("test").build(),
        }
    }

    fn endpoint(kind: SpanKind, attributes: &[(&'static str, &'static str)]) -> Option<String> {
        let attributes = attributes.iter().map(|&(k, v)| KeyValue::new(k, v)).collect();
        let processor = ProfilingSpanProcessor { resource: None };
        processor
            .endpoint(&span_data("request", kind, attributes))
            .map(|e| e.to_string())
    }

    #[test]
    fn endpoints_are_named_as_datadogs_agent_names_resources() {
        use SpanKind::*;
        assert_eq!(endpoint(Server, &[]), Some("request".into()));
        assert_eq!(
            endpoint(
                Server,
                &[("http.request.method", "GET"), ("http.route", "/users/{id}")]
            ),
            Some("GET /users/{id}".into())
        );
        assert_eq!(
            endpoint(Server, &[("http.method", "_OTHER"), ("http.route", "/x")]),
            Some("HTTP /x".into())
        );
        assert_eq!(
            endpoint(Server, &[("http.request.method", "POST")]),
            Some("POST".into())
        );
        assert_eq!(
            endpoint(
                Server,
                &[("resource.name", "checkout"), ("http.request.method", "GET")]
            ),
            Some("checkout".into())
        );
        assert_eq!(
            endpoint(Server, &[("rpc.method", "Get"), ("rpc.service", "Users")]),
            Some("Get Users".into())
        );
        // Not a request: no endpoint, whatever the resource.
        assert_eq!(endpoint(Internal, &[("resource.name", "batch")]), None);
        assert_eq!(endpoint(Client, &[("http.request.method", "GET")]), None);
        // The type decides over the kind.
        assert_eq!(
            endpoint(Internal, &[("span.type", "web"), ("resource.name", "job")]),
            Some("job".into())
        );
        assert_eq!(endpoint(Server, &[("span.type", "worker")]), None);
    }

    #[test]
    fn the_providers_resource_names_a_span_before_the_span_does() {
        let processor = ProfilingSpanProcessor {
            resource: Some(
                Resource::builder_empty()
                    .with_attribute(KeyValue::new("resource.name", "from-resource"))
                    .build(),
            ),
        };
        let span = span_data(
            "request",
            SpanKind::Server,
            vec![KeyValue::new("resource.name", "own")],
        );
        assert_eq!(processor.endpoint(&span).as_deref(), Some("from-resource"));
    }

    #[test]
    fn a_trace_lives_while_its_spans_are_open_and_keeps_its_first_root() {
        let traces = Traces::new();
        let id = |n: u64| NonZeroU64::new(n).unwrap();
        let trace = 0xabc_u128;
        // A child of a trace this table never saw opened: ignored.
        traces.start(trace, id(1), false);
        assert!(traces.root_of(trace).is_none());
        traces.start(trace, id(2), true);
        traces.start(trace, id(3), false);
        // The same trace entering again through a remote parent.
        traces.start(trace, id(4), true);
        assert_eq!(traces.root_of(trace).map(|r| r.id()), Some(id(2)));
        assert!(traces.end(trace, id(4)).is_none());
        // The root ends before its child: the trace stays for the child.
        let root = traces.end(trace, id(2)).unwrap();
        assert_eq!(root.id(), id(2));
        assert_eq!(traces.root_of(trace).map(|r| r.id()), Some(id(2)));
        assert!(traces.end(trace, id(3)).is_none());
        assert!(traces.root_of(trace).is_none());
        assert!(traces.end(trace, id(1)).is_none());
    }

    #[test]
    fn ids_are_datadogs() {
        let context = SpanContext::new(
            TraceId::from(0x0102_u128),
            SpanId::from_bytes([0x80, 0, 0, 0, 0, 0, 0, 1]),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        );
        assert_eq!(
            span_id(&context).map(NonZeroU64::get),
            Some(0x8000_0000_0000_0001)
        );
        assert_eq!(trace_id(&context), Some(0x0102));
        assert_eq!(trace_id(&SpanContext::empty_context()), None);
    }
}
