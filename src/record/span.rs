//! The span a sampled event happened in, for the labels by which Datadog
//! links profiles to traces: `span id`, `local root span id` and `trace
//! endpoint`.
//!
//! The recording core knows no tracer. A tracer integration (the
//! `opentelemetry` feature's span processor) registers one [`Provider`],
//! which the recorder calls when it builds a sampled event, and only then:
//! an unsampled acquisition never reaches this module. What the provider
//! returns rides in the event's boxed `extra` part.
//!
//! A trace's endpoint is its local root span's resource, and a resource may
//! be set until the span ends, after the lock samples taken inside it. So
//! the provider hands over a shared [`LocalRoot`] that the integration fills
//! in when the root ends, and the endpoint is read from it at the flush, as
//! Datadog's own profilers resolve it when a profile is serialized (their
//! tracer maps local root span ids to endpoints as root spans finish). A
//! request still running at a flush has no endpoint in that profile.

use std::num::NonZeroU64;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, OnceLock};

use super::forksafe::ForkSafeMutex;
use super::sampler;
use crate::util::fxhash::FxHashMap;

/// For an integration's own tables, updated on a user's thread.
#[cfg(feature = "opentelemetry")]
pub(crate) use super::sampler::unrecorded;

/// The span a sampled event happened in.
#[derive(Debug, Clone)]
pub(crate) struct SpanLabels {
    /// Datadog's span id: an OpenTelemetry span id's 8 bytes, big-endian.
    pub(crate) span_id: NonZeroU64,
    /// The span's local root, when the integration knows it.
    pub(crate) root: Option<Arc<LocalRoot>>,
}

/// A local root span: the first span of a trace in this process (its parent
/// is remote, or it has none). Shared by the events taken under it; its
/// endpoint is set once, when it ends.
#[derive(Debug)]
pub(crate) struct LocalRoot {
    id: NonZeroU64,
    /// Set when the span ends: its endpoint, or `None` when it is not one
    /// (a root span that serves no request).
    endpoint: OnceLock<Option<Arc<str>>>,
}

// What only a tracer integration calls is unused without one.
#[cfg_attr(not(feature = "opentelemetry"), allow(dead_code))]
impl LocalRoot {
    pub(crate) fn new(id: NonZeroU64) -> LocalRoot {
        LocalRoot {
            id,
            endpoint: OnceLock::new(),
        }
    }

    /// The span id, as the `local root span id` label carries it.
    pub(crate) fn id(&self) -> NonZeroU64 {
        self.id
    }

    /// Records that the span ended, as an endpoint or not. The first call
    /// counts: an endpoint is counted in the running period's
    /// [`take_endpoint_counts`].
    pub(crate) fn end(&self, endpoint: Option<Arc<str>>) {
        let counted = endpoint.clone();
        if self.endpoint.set(endpoint).is_ok() {
            if let Some(endpoint) = counted {
                count_endpoint(endpoint);
            }
        }
    }

    /// The endpoint, once the span has ended as one.
    pub(crate) fn endpoint(&self) -> Option<&Arc<str>> {
        self.endpoint.get().and_then(Option::as_ref)
    }
}

/// Returns the span this thread is in now, if any. Called on a user's
/// thread while building a sampled event, possibly with the user's lock
/// held: it must not block, and should not allocate.
pub(crate) type Provider = fn() -> Option<SpanLabels>;

static PROVIDER: OnceLock<Provider> = OnceLock::new();

/// Registers the provider of span labels; the first one registered stays.
#[cfg_attr(not(feature = "opentelemetry"), allow(dead_code))]
pub(crate) fn set_provider(provider: Provider) {
    let _ = PROVIDER.set(provider);
}

/// The span of the sampled event being built, if a provider is registered.
/// A panic in the provider (a tracer's thread-local already torn down)
/// costs the labels, not the event.
#[inline]
pub(crate) fn current() -> Option<SpanLabels> {
    let provider = PROVIDER.get()?;
    catch_unwind(AssertUnwindSafe(provider)).ok().flatten()
}

/// Requests served per endpoint (local root spans that ended as one) while
/// a profiler runs, since the last period was taken.
static ENDPOINT_COUNTS: ForkSafeMutex<FxHashMap<Arc<str>, u64>> = ForkSafeMutex::new(FxHashMap::default);

#[cfg_attr(not(feature = "opentelemetry"), allow(dead_code))]
fn count_endpoint(endpoint: Arc<str>) {
    if sampler::session().is_none() {
        return;
    }
    // A user's thread, at the end of a request: what the map allocates
    // must not be recorded (a global allocator may take a profiled lock).
    sampler::unrecorded(|| *ENDPOINT_COUNTS.lock().entry(endpoint).or_default() += 1);
}

/// The endpoint counts since the last call, by endpoint.
pub(crate) fn take_endpoint_counts() -> Vec<(Arc<str>, u64)> {
    let mut counts: Vec<(Arc<str>, u64)> = std::mem::take(&mut *ENDPOINT_COUNTS.lock()).into_iter().collect();
    counts.sort_unstable();
    counts
}

/// In a forked child, before it starts a profiler: a thread of the parent
/// may have held the counts at the fork.
pub(super) fn after_fork() {
    ENDPOINT_COUNTS.renew(|_| FxHashMap::default());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::LockProfile;
    use crate::{EncodedProfile, Export, ExportError, ProfiledMutex, Profiler};
    use std::cell::RefCell;
    use std::sync::Mutex;

    thread_local! {
        /// The span the test's provider reports on this thread.
        static IN_SPAN: RefCell<Option<SpanLabels>> = const { RefCell::new(None) };
    }

    fn test_provider() -> Option<SpanLabels> {
        IN_SPAN.with(|s| s.borrow().clone())
    }

    fn in_span<R>(span_id: u64, root: &Arc<LocalRoot>, f: impl FnOnce() -> R) -> R {
        IN_SPAN.with(|s| {
            *s.borrow_mut() = Some(SpanLabels {
                span_id: NonZeroU64::new(span_id).unwrap(),
                root: Some(Arc::clone(root)),
            })
        });
        let r = f();
        IN_SPAN.with(|s| *s.borrow_mut() = None);
        r
    }

    #[derive(Clone, Default)]
    struct Keep(Arc<Mutex<Vec<EncodedProfile>>>);

    impl Export for Keep {
        fn export(&mut self, profile: &EncodedProfile) -> Result<(), ExportError> {
            self.0.lock().unwrap().push(profile.clone());
            Ok(())
        }
        fn describe(&self) -> String {
            "kept".into()
        }
    }

    /// The path from a provider to a profile, without a tracer: every
    /// sampled event carries the span it was taken in, the endpoint of a
    /// root that ended before the flush is read then, and a root still
    /// running at the flush has none.
    #[test]
    fn sampled_events_carry_their_span_and_the_endpoint_known_at_the_flush() {
        set_provider(test_provider);
        let kept = Keep::default();
        let profiler = Profiler::builder()
            .ignore_env()
            .capture_pct(100.0)
            .export(kept.clone())
            .start()
            .unwrap();
        let lock = ProfiledMutex::new(0u32).named("span_test_lock");
        let id = |n| NonZeroU64::new(n).unwrap();
        let (request, running) = (Arc::new(LocalRoot::new(id(11))), Arc::new(LocalRoot::new(id(21))));
        in_span(11, &request, || *lock.lock().unwrap() += 1);
        in_span(12, &request, || *lock.lock().unwrap() += 1);
        in_span(22, &running, || *lock.lock().unwrap() += 1);
        *lock.lock().unwrap() += 1;
        // The resource is known as the request ends, after its samples.
        request.end(Some(Arc::from("GET /users/{id}")));
        profiler.stop();

        let profiles = kept.0.lock().unwrap();
        assert_eq!(profiles.len(), 1);
        assert_eq!(profiles[0].endpoint_counts, [("GET /users/{id}".to_owned(), 1)]);
        let profile = LockProfile::from_bytes(&profiles[0].gzipped_pprof).unwrap();
        let mut seen: Vec<_> = profile
            .samples
            .iter()
            .filter(|s| {
                s.lock_name
                    .as_deref()
                    .is_some_and(|n| n.ends_with(":span_test_lock"))
            })
            .map(|s| {
                let kind = if s.acquire > 0 { "acquire" } else { "release" };
                (
                    kind,
                    s.label_num("span id"),
                    s.label_num("local root span id"),
                    s.label_str("trace endpoint"),
                )
            })
            .collect();
        seen.sort();
        let endpoint = Some("GET /users/{id}");
        let expected: Vec<_> = ["acquire", "release"]
            .into_iter()
            .flat_map(|kind| {
                [
                    (kind, None, None, None),
                    (kind, Some(11), Some(11), endpoint),
                    (kind, Some(12), Some(11), endpoint),
                    (kind, Some(22), Some(21), None),
                ]
            })
            .collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn a_root_ends_once() {
        let root = LocalRoot::new(NonZeroU64::new(7).unwrap());
        assert_eq!(root.endpoint(), None);
        root.end(Some(Arc::from("GET /a")));
        root.end(Some(Arc::from("GET /b")));
        assert_eq!(root.endpoint().map(|e| &**e), Some("GET /a"));
        let not_a_request = LocalRoot::new(NonZeroU64::new(8).unwrap());
        not_a_request.end(None);
        assert_eq!(not_a_request.endpoint(), None);
    }
}
