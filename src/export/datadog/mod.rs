//! Uploads to a Datadog agent or the agentless intake.
//!
//! [`DatadogExporter::export`] only queues the profile; a thread of its own
//! (`lockprof-upload`) sends it, retries, and counts. The profiler thread
//! therefore never waits for the network either, and a slow agent costs the
//! locking threads nothing.

mod event;
mod multipart;
pub(crate) mod settings;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use parking_lot::{Condvar, Mutex};
use serde_json::Value;

use self::event::{FixedTags, PROFILE_PART};
use self::settings::{DatadogSettings, Endpoint};
use super::{EncodedProfile, Export, ExportError};
use crate::config::ConfigError;
use crate::record::session;

/// Profiles waiting for the upload thread; when full, the oldest is dropped.
pub(crate) const PENDING_CAPACITY: usize = 4;
/// Retries after the first attempt.
const MAX_RETRIES: u32 = 2;

/// Counts of uploads so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UploadStats {
    /// Profiles the agent or intake accepted.
    pub sent: u64,
    /// Profiles given up on: refused (4xx), or still failing after retries.
    pub failed: u64,
    /// Profiles dropped unsent: the pending queue was full, or the profiler
    /// stopped before they could be sent.
    pub dropped: u64,
    /// Retried attempts.
    pub retries: u64,
}

/// A cheap handle on an exporter's upload counts.
#[derive(Debug, Clone, Default)]
pub(crate) struct UploadCounters(Arc<Counters>);

#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    retries: AtomicU64,
}

impl UploadCounters {
    pub(crate) fn get(&self) -> UploadStats {
        let c = &self.0;
        UploadStats {
            sent: c.sent.load(Relaxed),
            failed: c.failed.load(Relaxed),
            dropped: c.dropped.load(Relaxed),
            retries: c.retries.load(Relaxed),
        }
    }
}

struct Queue {
    pending: Mutex<Pending>,
    changed: Condvar,
    counters: UploadCounters,
}

struct Pending {
    profiles: VecDeque<EncodedProfile>,
    /// Set when the profiler stops: nothing is attempted after it.
    stop_by: Option<Instant>,
}

/// Sends each profile to a Datadog agent or the intake, from its own thread.
pub(crate) struct DatadogExporter {
    queue: Arc<Queue>,
    thread: Option<JoinHandle<()>>,
    finished: Receiver<()>,
    endpoint: Endpoint,
    timeout: Duration,
    /// Whether uploads keep `lock-caused-wait` (see
    /// [`DatadogSettings::upload_caused_wait`]).
    caused_wait: bool,
}

impl std::fmt::Debug for DatadogExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatadogExporter")
            .field("endpoint", &self.endpoint)
            .field("stats", &self.queue.counters.get())
            .finish()
    }
}

/// What the exporter needs besides its settings.
pub(crate) struct ExporterParams {
    /// The upload period: retries happen inside it.
    pub(crate) interval: Duration,
    /// `info.profiler.settings` of every event.
    pub(crate) settings_json: Value,
}

impl DatadogExporter {
    /// Starts the upload thread for `endpoint`. Fails on an agentless
    /// endpoint that is not https (the API key is never sent in the clear),
    /// an HTTP client that cannot be built (TLS set-up) or a thread that
    /// cannot be spawned.
    pub(crate) fn start(
        dd: &DatadogSettings,
        endpoint: Endpoint,
        params: ExporterParams,
    ) -> Result<Self, ConfigError> {
        if let Endpoint::Agentless { url, .. } = &endpoint {
            if !endpoint.is_https() {
                return Err(ConfigError::new(
                    "agentless intake URL",
                    url.clone(),
                    "expected https://: the API key is never sent over plain http",
                ));
            }
        }
        Self::spawn(dd, endpoint, params)
    }

    /// [`start`](Self::start) without the https check.
    fn spawn(dd: &DatadogSettings, endpoint: Endpoint, params: ExporterParams) -> Result<Self, ConfigError> {
        let service = dd.service.clone().unwrap_or_else(executable_name);
        let host = if endpoint.is_agentless() {
            event::hostname()
        } else {
            None
        };
        let user_tags: Vec<String> = dd
            .tags
            .iter()
            .flatten()
            .chain(dd.profiling_tags.iter().flatten())
            .cloned()
            .collect();
        let tags = FixedTags::new(
            &service,
            dd.env.as_deref(),
            dd.version.as_deref(),
            host.as_deref(),
            &user_tags,
        );
        let timeout = dd.timeout();
        let queue = Arc::new(Queue {
            pending: Mutex::new(Pending {
                profiles: VecDeque::with_capacity(PENDING_CAPACITY),
                stop_by: None,
            }),
            changed: Condvar::new(),
            counters: UploadCounters::default(),
        });
        let (built_tx, built_rx) = crossbeam_channel::bounded(1);
        let (finished_tx, finished) = crossbeam_channel::bounded::<()>(0);
        let uploader_queue = Arc::clone(&queue);
        let uploader_endpoint = endpoint.clone();
        let thread = std::thread::Builder::new()
            .name("lockprof-upload".into())
            .spawn(move || {
                // Nothing this thread does is ever recorded, to its last
                // destructor.
                session::mark_profiler_thread();
                // Dropped when this thread ends, whatever the way.
                let _finished = finished_tx;
                {
                    // The client (and its runtime thread) is built and dropped
                    // here, never on a user's thread or inside their runtime.
                    let client = match build_client(&uploader_endpoint, timeout) {
                        Ok(c) => {
                            let _ = built_tx.send(Ok(()));
                            c
                        }
                        Err(e) => {
                            let _ = built_tx.send(Err(e));
                            return;
                        }
                    };
                    Uploader {
                        client,
                        endpoint: uploader_endpoint,
                        tags,
                        settings_json: params.settings_json,
                        interval: params.interval,
                        timeout,
                        queue: uploader_queue,
                    }
                    .run();
                }
            })
            .map_err(|e| ConfigError::new("upload thread", "", format!("cannot spawn it: {e}")))?;
        match built_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(ConfigError::new(
                    "HTTP client",
                    endpoint.to_string(),
                    e.to_string(),
                ));
            }
            Err(_) => {
                let _ = thread.join();
                return Err(ConfigError::new(
                    "HTTP client",
                    endpoint.to_string(),
                    "the upload thread ended",
                ));
            }
        }
        Ok(DatadogExporter {
            queue,
            thread: Some(thread),
            finished,
            endpoint,
            timeout,
            caused_wait: dd.upload_caused_wait.unwrap_or(false),
        })
    }

    /// A handle on the upload counts.
    pub(crate) fn counters(&self) -> UploadCounters {
        self.queue.counters.clone()
    }
}

impl Export for DatadogExporter {
    fn export(&mut self, profile: &EncodedProfile) -> Result<(), ExportError> {
        let mut profile = profile.clone();
        if !self.caused_wait {
            // An unknown sample type must never get the user's profile
            // dropped by the intake.
            match crate::pprof::without_caused_wait(&profile.gzipped_pprof) {
                Ok(stripped) => profile.gzipped_pprof = stripped,
                // Not a profile this crate wrote: it has nothing to remove.
                Err(e) => log::debug!("lockprof: profile #{} sent as it is: {e}", profile.seq),
            }
        }
        let mut pending = self.queue.pending.lock();
        if pending.profiles.len() >= PENDING_CAPACITY {
            if let Some(old) = pending.profiles.pop_front() {
                self.queue.counters.0.dropped.fetch_add(1, Relaxed);
                log::warn!(
                    "lockprof: upload queue full ({PENDING_CAPACITY} profiles waiting for {}); dropped profile #{}",
                    self.endpoint,
                    old.seq
                );
            }
        }
        pending.profiles.push_back(profile);
        drop(pending);
        self.queue.changed.notify_all();
        Ok(())
    }

    fn describe(&self) -> String {
        format!("Datadog {}", self.endpoint)
    }

    fn finish(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        let stop_by = Instant::now() + self.timeout;
        self.queue.pending.lock().stop_by = Some(stop_by);
        self.queue.changed.notify_all();
        // The thread never outlives its deadline by more than one request's
        // set-up; past that it is left to end on its own.
        let grace = Duration::from_millis(250);
        if let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
            self.finished.recv_timeout(self.timeout + grace)
        {
            log::warn!(
                "lockprof: uploads to {} still pending after {:?}; not waiting longer",
                self.endpoint,
                self.timeout
            );
            return;
        }
        let _ = thread.join();
    }
}

impl Drop for DatadogExporter {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Why the upload thread has no HTTP client.
#[derive(Debug, thiserror::Error)]
enum ClientError {
    #[error("TLS set-up failed: {0}")]
    Tls(#[source] rustls::Error),
    #[error("cannot load the system's TLS roots: {0}")]
    Roots(#[source] rustls::Error),
    #[error("cannot build the HTTP client: {0}")]
    Build(#[source] reqwest::Error),
}

fn build_client(endpoint: &Endpoint, timeout: Duration) -> Result<reqwest::blocking::Client, ClientError> {
    let tls = tls_config(endpoint.is_https())?;
    let builder = reqwest::blocking::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("lockprof/", env!("CARGO_PKG_VERSION")))
        // The agent is local and the intake is reached directly, as Datadog's
        // libraries do; no redirect may carry the API key elsewhere.
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .tls_backend_preconfigured(tls);
    #[cfg(unix)]
    let builder = match endpoint {
        Endpoint::Socket { path } => builder.unix_socket(path.as_path()),
        _ => builder,
    };
    builder.build().map_err(ClientError::Build)
}

/// rustls with the ring provider and the platform's roots. reqwest needs a
/// TLS configuration even for plain HTTP; when no roots can be loaded and
/// none are needed, an empty store does.
fn tls_config(needed: bool) -> Result<rustls::ClientConfig, ClientError> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(ClientError::Tls)?;
    match builder.clone().with_platform_verifier() {
        Ok(b) => Ok(b.with_no_client_auth()),
        Err(e) if needed => Err(ClientError::Roots(e)),
        Err(_) => Ok(builder
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth()),
    }
}

/// The executable's file name, the default service.
pub(crate) fn executable_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "unnamed-rust-service".to_owned())
}

struct Uploader {
    client: reqwest::blocking::Client,
    endpoint: Endpoint,
    tags: FixedTags,
    settings_json: Value,
    interval: Duration,
    timeout: Duration,
    queue: Arc<Queue>,
}

enum Outcome {
    Sent,
    /// Worth another try: transport error, timeout, 5xx, 408, 429.
    Retry(SendError),
    /// Refused for good.
    Refused(SendError),
}

/// Why one upload did not go through, as logged. Never holds the API key:
/// texts that came back from the network are redacted first.
#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error("the profiler stopped before it could be sent")]
    Stopped,
    #[error("DD_API_KEY holds characters not allowed in a header")]
    KeyNotAHeader,
    /// Timeout, connection or request failure (redacted).
    #[error("{0}")]
    Transport(String),
    /// 408, 429 and 5xx.
    #[error("HTTP {code} from {to}")]
    Busy { code: u16, to: String },
    #[error("HTTP {code} from {to}: the API key was refused (check DD_API_KEY{where_})")]
    KeyRefused {
        code: u16,
        to: String,
        where_: &'static str,
    },
    #[error("HTTP 404 from {to}: the agent is too old to accept profiles, or the URL is wrong")]
    NotFound { to: String },
    /// Any other status, with the start of the answer's body (redacted).
    #[error("HTTP {code} from {to}: {body}")]
    Status { code: u16, to: String, body: String },
}

impl Uploader {
    fn run(&self) {
        loop {
            let (profile, stop_by) = {
                let mut pending = self.queue.pending.lock();
                while pending.profiles.is_empty() && pending.stop_by.is_none() {
                    self.queue.changed.wait(&mut pending);
                }
                match pending.profiles.pop_front() {
                    Some(p) => (p, pending.stop_by),
                    None => return,
                }
            };
            if stop_by.is_some_and(|t| Instant::now() >= t) {
                let left = 1 + self.queue.pending.lock().profiles.drain(..).count() as u64;
                self.queue.counters.0.dropped.fetch_add(left, Relaxed);
                log::warn!(
                    "lockprof: stopped with {left} profile(s) not sent to {}",
                    self.endpoint
                );
                return;
            }
            self.deliver(&profile);
        }
    }

    /// Sends one profile, retrying inside its upload period.
    fn deliver(&self, profile: &EncodedProfile) {
        let counters = &self.queue.counters.0;
        let period_end = Instant::now() + self.interval;
        let base = (self.interval / 10).clamp(Duration::from_millis(50), Duration::from_secs(2));
        let mut attempt = 0;
        loop {
            let why = match self.send(profile) {
                Outcome::Sent => {
                    counters.sent.fetch_add(1, Relaxed);
                    log::debug!("lockprof: profile #{} sent to {}", profile.seq, self.endpoint);
                    return;
                }
                Outcome::Refused(why) => {
                    counters.failed.fetch_add(1, Relaxed);
                    log::error!("lockprof: profile #{} dropped: {why}", profile.seq);
                    return;
                }
                Outcome::Retry(why) => why,
            };
            // Jitter keeps many processes from retrying in step.
            let jitter = 0.5 + (event::random_u64() % 1000) as f64 / 1000.0;
            let delay = (base * (1 << attempt)).mul_f64(jitter);
            let retry_at = Instant::now() + delay;
            let limit = match self.queue.pending.lock().stop_by {
                Some(stop_by) => stop_by.min(period_end),
                None => period_end,
            };
            if attempt >= MAX_RETRIES || retry_at >= limit || !self.pause_until(retry_at) {
                counters.failed.fetch_add(1, Relaxed);
                log::error!(
                    "lockprof: profile #{} not sent after {} attempt(s): {why}",
                    profile.seq,
                    attempt + 1
                );
                return;
            }
            attempt += 1;
            counters.retries.fetch_add(1, Relaxed);
            log::warn!(
                "lockprof: upload of profile #{} failed ({why}); retrying",
                profile.seq
            );
        }
    }

    /// Waits until `t`; false if the profiler is stopping and its deadline
    /// comes first.
    fn pause_until(&self, t: Instant) -> bool {
        let mut pending = self.queue.pending.lock();
        loop {
            if pending.stop_by.is_some_and(|s| s < t) {
                return false;
            }
            if self.queue.changed.wait_until(&mut pending, t).timed_out() {
                return true;
            }
        }
    }

    fn send(&self, profile: &EncodedProfile) -> Outcome {
        let event = event::event_json(
            profile,
            &self.tags,
            &self.settings_json,
            &self.queue.counters.get(),
        );
        let boundary = multipart::boundary();
        let body = multipart::body(
            &boundary,
            &[
                multipart::Part {
                    name: "event",
                    filename: "event.json",
                    content_type: Some("application/json"),
                    body: &event,
                },
                multipart::Part {
                    name: PROFILE_PART,
                    filename: PROFILE_PART,
                    content_type: None,
                    body: &profile.gzipped_pprof,
                },
            ],
        );
        let mut timeout = self.timeout;
        if let Some(stop_by) = self.queue.pending.lock().stop_by {
            timeout = timeout.min(stop_by.saturating_duration_since(Instant::now()));
            if timeout.is_zero() {
                return Outcome::Refused(SendError::Stopped);
            }
        }
        let mut request = self
            .client
            .post(self.endpoint.url())
            .timeout(timeout)
            .header(
                "Content-Type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .header("DD-EVP-ORIGIN", "lockprof")
            .header("DD-EVP-ORIGIN-VERSION", env!("CARGO_PKG_VERSION"))
            .body(body);
        if let Endpoint::Agentless { key, .. } = &self.endpoint {
            let mut value = match reqwest::header::HeaderValue::from_str(key.expose()) {
                Ok(v) => v,
                Err(_) => return Outcome::Refused(SendError::KeyNotAHeader),
            };
            value.set_sensitive(true);
            request = request.header("DD-API-KEY", value);
        }
        let response = match request.send() {
            Ok(r) => r,
            Err(e) => return Outcome::Retry(SendError::Transport(self.redact(&transport_error(&e)))),
        };
        let status = response.status();
        if status.is_success() {
            return Outcome::Sent;
        }
        let code = status.as_u16();
        let body: String = response.text().unwrap_or_default().chars().take(200).collect();
        let body = self.redact(body.trim());
        let to = self.endpoint.to_string();
        match code {
            408 | 429 | 500..=599 => Outcome::Retry(SendError::Busy { code, to }),
            401 | 403 => Outcome::Refused(SendError::KeyRefused {
                code,
                where_: if self.endpoint.is_agentless() {
                    ""
                } else {
                    " in the agent's configuration"
                },
                to,
            }),
            404 => Outcome::Refused(SendError::NotFound { to }),
            _ => Outcome::Refused(SendError::Status { code, to, body }),
        }
    }

    /// Never lets the API key into a log line.
    fn redact(&self, text: &str) -> String {
        match &self.endpoint {
            Endpoint::Agentless { key, .. } if !key.expose().is_empty() => {
                text.replace(key.expose(), "<redacted>")
            }
            _ => text.to_owned(),
        }
    }
}

fn transport_error(e: &reqwest::Error) -> String {
    let mut msg = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "cannot connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::ProfileStats;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::time::SystemTime;

    /// Accepts one request, answers 202, and returns it raw.
    fn one_request_server() -> (String, std::thread::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/api/v2/profile", listener.local_addr().unwrap());
        let t = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut raw = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = s.read(&mut buf).unwrap();
                raw.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&raw).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len: usize = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if raw.len() >= end + 4 + len {
                        break;
                    }
                }
            }
            s.write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .unwrap();
            raw
        });
        (url, t)
    }

    #[test]
    fn agentless_uploads_carry_the_key_header_and_the_host_tag() {
        let (url, server) = one_request_server();
        let dd = DatadogSettings {
            service: Some("svc".into()),
            ..DatadogSettings::default()
        };
        let endpoint = Endpoint::Agentless {
            url,
            key: settings::ApiKey::new("k3y-under-test"),
        };
        let params = ExporterParams {
            interval: Duration::from_secs(1),
            settings_json: serde_json::json!({"agentless": true}),
        };
        // Plain http on loopback, so that the test can read the header:
        // `start` itself refuses it (see the test below).
        let mut exporter = DatadogExporter::spawn(&dd, endpoint, params).unwrap();
        assert!(!format!("{exporter:?} {}", exporter.describe()).contains("k3y-under-test"));
        let counters = exporter.counters();
        let profile = EncodedProfile {
            gzipped_pprof: vec![0x1f, 0x8b, 0, 0],
            start: SystemTime::now(),
            end: SystemTime::now(),
            seq: 7,
            stats: ProfileStats::default(),
            endpoint_counts: Vec::new(),
        };
        exporter.export(&profile).unwrap();
        exporter.finish();
        let raw = String::from_utf8_lossy(&server.join().unwrap()).to_string();
        let head = raw[..raw.find("\r\n\r\n").unwrap()].to_ascii_lowercase();
        assert!(head.starts_with("post /api/v2/profile http/1.1"), "{head}");
        assert!(head.contains("\r\ndd-api-key: k3y-under-test"), "{head}");
        assert!(head.contains("\r\ndd-evp-origin: lockprof"), "{head}");
        assert!(raw.contains(",host:"), "agentless adds the host tag");
        assert!(raw.contains("profile_seq:7"));
        assert_eq!(counters.get().sent, 1);
    }

    #[test]
    fn an_http_agentless_endpoint_is_refused_before_any_request() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}/api/v2/profile", listener.local_addr().unwrap());
        let endpoint = Endpoint::Agentless {
            url: url.clone(),
            key: settings::ApiKey::new("k3y-never-in-the-clear"),
        };
        let params = ExporterParams {
            interval: Duration::from_secs(1),
            settings_json: serde_json::json!({}),
        };
        let e = DatadogExporter::start(&DatadogSettings::default(), endpoint, params).unwrap_err();
        assert_eq!(e.value, url);
        let msg = e.to_string();
        assert!(
            msg.contains("agentless intake URL") && msg.contains("https"),
            "{msg}"
        );
        assert!(!msg.contains("k3y-never-in-the-clear"), "{msg}");
        std::thread::sleep(Duration::from_millis(50));
        assert!(listener.accept().is_err(), "nothing connected");
    }
}
