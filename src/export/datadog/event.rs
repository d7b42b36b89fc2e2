//! The `event` part of an upload: `event.json`, as ddtrace 4.16 writes it.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::UploadStats;
use crate::export::EncodedProfile;

/// The name and filename of the profile part.
pub(crate) const PROFILE_PART: &str = "lock.pprof";

/// Tags that stay the same for every profile of one exporter.
#[derive(Debug, Clone)]
pub(crate) struct FixedTags {
    /// `k:v` pairs, in order, before `profile_seq`.
    pub(crate) before_seq: Vec<String>,
    /// `k:v` pairs after `profile_seq`: `host`, `DD_TAGS`, `DD_PROFILING_TAGS`.
    pub(crate) after_seq: Vec<String>,
}

impl FixedTags {
    pub(crate) fn new(
        service: &str,
        env: Option<&str>,
        version: Option<&str>,
        host: Option<&str>,
        user_tags: &[String],
    ) -> Self {
        let mut before_seq = vec![format!("service:{service}")];
        if let Some(env) = env {
            before_seq.push(format!("env:{env}"));
        }
        if let Some(version) = version {
            before_seq.push(format!("version:{version}"));
        }
        before_seq.extend([
            "language:rust".to_owned(),
            "runtime:rust".to_owned(),
            format!("runtime_version:{}", runtime_version()),
            format!("runtime-id:{}", runtime_id()),
            format!("profiler_version:{}", env!("CARGO_PKG_VERSION")),
            format!("process_id:{}", std::process::id()),
        ]);
        let mut after_seq = Vec::new();
        if let Some(host) = host {
            after_seq.push(format!("host:{host}"));
        }
        after_seq.extend(user_tags.iter().cloned());
        FixedTags {
            before_seq,
            after_seq,
        }
    }

    fn render(&self, seq: u64) -> String {
        let seq = format!("profile_seq:{seq}");
        let all: Vec<&str> = self
            .before_seq
            .iter()
            .map(String::as_str)
            .chain(std::iter::once(seq.as_str()))
            .chain(self.after_seq.iter().map(String::as_str))
            .collect();
        all.join(",")
    }
}

/// The `event.json` of one upload, its keys in ddtrace's order.
pub(crate) fn event_json(
    profile: &EncodedProfile,
    tags: &FixedTags,
    settings: &Value,
    uploads: &UploadStats,
) -> Vec<u8> {
    let s = profile.stats;
    let internal = json!({
        "events_recorded": s.events_recorded,
        "events_dropped": s.events_dropped,
        "sample_count": s.samples,
        "internal_panics": s.internal_panics,
        "profiles_sent": uploads.sent,
        "profiles_failed": uploads.failed,
        "profiles_dropped": uploads.dropped,
        "upload_retries": uploads.retries,
        "lockprof_version": env!("CARGO_PKG_VERSION"),
    });
    let fields: [(&str, Value); 9] = [
        ("attachments", json!([PROFILE_PART])),
        ("tags_profiler", Value::String(tags.render(profile.seq))),
        ("start", Value::String(rfc3339(profile.start))),
        ("end", Value::String(rfc3339(profile.end))),
        ("family", json!("rust")),
        ("version", json!("4")),
        ("endpoint_counts", endpoint_counts(&profile.endpoint_counts)),
        ("internal", internal),
        ("info", json!({ "profiler": { "settings": settings } })),
    ];
    let mut out = b"{".to_vec();
    for (i, (key, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, key);
        out.push(b':');
        let _ = serde_json::to_writer(&mut out, value);
    }
    out.push(b'}');
    out
}

/// `endpoint_counts` as Datadog's profilers send it: requests per endpoint,
/// `{"GET /users": 12}`, or `null` when there were none.
fn endpoint_counts(counts: &[(String, u64)]) -> Value {
    if counts.is_empty() {
        return Value::Null;
    }
    Value::Object(
        counts
            .iter()
            .map(|(endpoint, n)| (endpoint.clone(), json!(n)))
            .collect(),
    )
}

/// The version of the compiler that built this crate (`1.83.0`).
pub(crate) fn runtime_version() -> &'static str {
    option_env!("LOCKPROF_RUSTC_VERSION").unwrap_or("unknown")
}

/// One random UUID (version 4) per process.
pub(crate) fn runtime_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let (a, b) = (random_u64(), random_u64());
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&a.to_le_bytes());
        bytes[8..].copy_from_slice(&b.to_le_bytes());
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..]
        )
    })
}

/// 64 random bits. `RandomState` is seeded from the OS's random source once
/// per thread and advanced on every use; hashing the time and a counter on
/// top gives distinct values without a random-number crate.
pub(crate) fn random_u64() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Relaxed));
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// `2026-11-22T01:21:56.285483012Z`.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The machine's host name, for agentless uploads.
pub(crate) fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most
    // that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).into_owned();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_rfc3339_utc_with_nanoseconds() {
        let t = UNIX_EPOCH + Duration::new(1_795_137_716, 285_483_012);
        assert_eq!(rfc3339(t), "2026-11-20T01:21:56.285483012Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000000000Z");
    }

    #[test]
    fn event_keys_come_in_ddtraces_order_and_parse() {
        let profile = EncodedProfile {
            gzipped_pprof: Vec::new(),
            start: UNIX_EPOCH,
            end: UNIX_EPOCH + Duration::from_secs(1),
            seq: 3,
            stats: crate::export::ProfileStats::default(),
            endpoint_counts: Vec::new(),
        };
        let tags = FixedTags::new("svc", Some("prod"), None, None, &["a:b".to_owned()]);
        let bytes = event_json(&profile, &tags, &json!({"x": 1}), &UploadStats::default());
        let text = String::from_utf8(bytes).unwrap();
        let keys = [
            "attachments",
            "tags_profiler",
            "start",
            "end",
            "family",
            "version",
            "endpoint_counts",
            "internal",
            "info",
        ];
        let at: Vec<usize> = keys
            .iter()
            .map(|k| text.find(&format!("\"{k}\":")).unwrap())
            .collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["info"]["profiler"]["settings"]["x"], 1);
        let tags = v["tags_profiler"].as_str().unwrap();
        assert!(
            tags.starts_with("service:svc,env:prod,language:rust,runtime:rust,"),
            "{tags}"
        );
        assert!(tags.ends_with(",profile_seq:3,a:b"), "{tags}");
    }

    #[test]
    fn endpoint_counts_are_a_map_of_requests_or_null() {
        let mut profile = EncodedProfile {
            gzipped_pprof: Vec::new(),
            start: UNIX_EPOCH,
            end: UNIX_EPOCH,
            seq: 0,
            stats: crate::export::ProfileStats::default(),
            endpoint_counts: Vec::new(),
        };
        let tags = FixedTags::new("svc", None, None, None, &[]);
        let event = |p: &EncodedProfile| -> Value {
            serde_json::from_slice(&event_json(p, &tags, &json!({}), &UploadStats::default())).unwrap()
        };
        // As ddtrace 4.16 sends it without requests (tests/data/).
        assert_eq!(event(&profile)["endpoint_counts"], Value::Null);
        profile.endpoint_counts = vec![("GET /users/{id}".to_owned(), 3), ("checkout".to_owned(), 1)];
        assert_eq!(
            event(&profile)["endpoint_counts"],
            json!({"GET /users/{id}": 3, "checkout": 1})
        );
    }

    #[test]
    fn runtime_id_is_one_uuid_v4_per_process() {
        let id = runtime_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_eq!(id, runtime_id());
    }
}
