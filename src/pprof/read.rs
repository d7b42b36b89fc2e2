//! Reading lock profiles back: gzip'd, zstd'd or raw pprof, from lockprof or
//! from Datadog's other profilers; finding the profiles in a directory or under
//! a `DD_PROFILING_OUTPUT_PPROF` prefix ([`profile_files`]); merging several;
//! the formats of what lockprof writes: file names ([`ProfileFileName`]),
//! label keys ([`labels`]) and lock names ([`LockName`]). Used by tests, the
//! stress programs and the `lockprof` command.
//!
//! ```no_run
//! let profile = lockprof::read::LockProfile::from_file("/tmp/lockprof/app.1234.0.pprof")?;
//! for name in profile.lock_names() {
//!     println!("{name}");
//! }
//! # Ok::<(), lockprof::read::ReadError>(())
//! ```

use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use prost::Message;

use super::{proto, CAUSED_WAIT_TYPE, SAMPLE_TYPES};

pub use super::files::{profile_files, run_name, Pick, ProfileFileName};
pub use super::labels;
pub use crate::accuracy::{Figure, LockAccuracy};
pub use crate::site::LockName;

/// A decoded lock profile: one entry per pprof sample.
#[derive(Debug, Clone, PartialEq)]
pub struct LockProfile {
    /// `(type, unit)` of every value column, as written.
    pub sample_types: Vec<(String, String)>,
    /// The samples that carry lock values.
    pub samples: Vec<LockSample>,
    /// Start of the profile, nanoseconds since the Unix epoch.
    pub time_nanos: i64,
    /// Length of the period covered.
    pub duration_nanos: i64,
    /// `period_type` as `(type, unit)`, if set.
    pub period_type: Option<(String, String)>,
    /// Mean acquisitions per sampled one.
    pub period: i64,
    /// Free-form comments (lockprof writes capture rate, drop counts, and
    /// which figures are exact: see [`accuracy`](Self::accuracy)).
    pub comments: Vec<String>,
}

/// One sample's lock values, labels and stack.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LockSample {
    /// The `lock name` label, if present.
    pub lock_name: Option<String>,
    /// `lock-acquire` (count).
    pub acquire: i64,
    /// `lock-acquire-wait` (nanoseconds).
    pub acquire_wait_ns: i64,
    /// `lock-release` (count).
    pub release: i64,
    /// `lock-release-hold` (nanoseconds).
    pub release_hold_ns: i64,
    /// `lock-caused-wait` (nanoseconds): waiting that this holder stack's
    /// holds caused others (lockprof's own sample type; see
    /// [`LockProfile::blame`]).
    pub caused_wait_ns: i64,
    /// Every label as `(key, value)`.
    pub labels: Vec<(String, LabelValue)>,
    /// The stack, leaf first; inlined calls appear as frames of their own.
    pub frames: Vec<Frame>,
}

/// One holder stack of one lock, from [`LockProfile::blame`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Blame {
    /// The lock.
    pub lock_name: String,
    /// The holder's stack at its releases, leaf first.
    pub holder: Vec<Frame>,
    /// The waiting its holds caused, summed over the waiters (nanoseconds).
    pub caused_wait_ns: i64,
    /// Its own hold time (`lock-release-hold` of the same lock and stack).
    pub hold_ns: i64,
    /// Who waited, heaviest first.
    pub waiters: Vec<Waiter>,
}

/// A waiter stack held up by a [`Blame`]'s holder.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Waiter {
    /// The waiter's stack, leaf first; empty when the profile does not have
    /// it (more waiters at one release than are told apart, or the waiter's
    /// own sample was not kept).
    pub frames: Vec<Frame>,
    /// The part of its waits inside the holder's holds (nanoseconds).
    pub caused_wait_ns: i64,
}

/// A label value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelValue {
    /// A string label.
    Str(String),
    /// A numeric label.
    Num(i64),
}

/// One frame of a sample's stack.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Frame {
    /// Demangled function name (or a synthetic `<…>` frame).
    pub function: String,
    /// Source file, as recorded.
    pub file: String,
    /// Line number, 0 if unknown.
    pub line: i64,
}

impl LockSample {
    /// A string label's value.
    pub fn label_str(&self, key: &str) -> Option<&str> {
        self.labels.iter().find_map(|(k, v)| match v {
            LabelValue::Str(s) if k == key => Some(s.as_str()),
            _ => None,
        })
    }

    /// A numeric label's value.
    pub fn label_num(&self, key: &str) -> Option<i64> {
        self.labels.iter().find_map(|(k, v)| match v {
            LabelValue::Num(n) if k == key => Some(*n),
            _ => None,
        })
    }
}

/// Why a file could not be read as a lock profile.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is empty.
    #[error("empty file")]
    Empty,
    /// The data is compressed but does not decompress (truncated or corrupt).
    #[error("{format} data does not decompress: {message}")]
    Decompress {
        /// `gzip` or `zstd`.
        format: &'static str,
        /// What the decompressor said.
        message: String,
    },
    /// Compressed with a format this build cannot read.
    #[error("zstd-compressed profile: this build cannot read zstd (enable the `zstd` or `cli` feature)")]
    ZstdUnsupported,
    /// Not a pprof protobuf.
    #[error("not a pprof profile (gzip, zstd or raw protobuf): {0}")]
    NotProtobuf(String),
    /// A pprof profile without lock sample types.
    #[error("not a lock profile: it has no lock-* sample types (it has: {})", if .0.is_empty() { "none".to_owned() } else { .0.join(", ") })]
    NotLockProfile(Vec<String>),
    /// Nothing at this path, and no profile file under it as a prefix.
    #[error("no such file, directory or profile prefix")]
    NotFound,
    /// A directory, or a prefix, with no profile file.
    #[error("{0}")]
    NoProfiles(String),
    /// An index into one of the profile's tables is out of range.
    #[error("corrupt profile: {what} {index} is out of range ({len} entries)")]
    BadIndex {
        /// Which table.
        what: &'static str,
        /// The index found.
        index: i64,
        /// The table's length.
        len: usize,
    },
}

impl LockProfile {
    /// Reads a profile file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<LockProfile, ReadError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| ReadError::Io {
            path: path.to_owned(),
            source,
        })?;
        LockProfile::from_bytes(&bytes)
    }

    /// Decodes a gzip'd, zstd'd (with the `cli` feature) or raw pprof.
    pub fn from_bytes(bytes: &[u8]) -> Result<LockProfile, ReadError> {
        let raw = decompress(bytes)?;
        let profile =
            proto::Profile::decode(raw.as_slice()).map_err(|e| ReadError::NotProtobuf(e.to_string()))?;
        from_proto(&profile)
    }

    /// Adds `other`'s samples and comments to this profile; the period becomes
    /// the span of both. Sample types are this profile's, plus any of
    /// `other`'s that are new.
    pub fn merge(&mut self, other: LockProfile) {
        let start = |p: &LockProfile| (p.time_nanos != 0).then_some(p.time_nanos);
        let end = |p: &LockProfile| start(p).map(|t| t.saturating_add(p.duration_nanos.max(0)));
        let starts = [start(self), start(&other)];
        let ends = [end(self), end(&other)];
        if let (Some(s), Some(e)) = (starts.iter().flatten().min(), ends.iter().flatten().max()) {
            self.time_nanos = *s;
            self.duration_nanos = e.saturating_sub(*s);
        }
        for t in other.sample_types {
            if !self.sample_types.contains(&t) {
                self.sample_types.push(t);
            }
        }
        if self.period_type.is_none() {
            self.period_type = other.period_type;
        }
        self.period = self.period.max(other.period);
        self.samples.extend(other.samples);
        self.comments.extend(other.comments);
    }

    /// What the profile says of each lock name and mode's totals: which are
    /// exact, and the standard error of the estimated ones. Empty for
    /// profiles that do not say (Datadog's other profilers, older lockprof
    /// profiles); a merged profile holds one entry per lock and mode of each
    /// profile merged (combine them with [`Figure::combine`]).
    pub fn accuracy(&self) -> Vec<LockAccuracy> {
        self.comments
            .iter()
            .filter_map(|c| LockAccuracy::from_comment(c))
            .collect()
    }

    /// Who made whom wait: per lock, each holder stack with the wait its
    /// holds caused (`lock-caused-wait`), its own hold time, and the waiter
    /// stacks it held up; heaviest first. Empty for profiles without caused
    /// wait (Datadog uploads unless asked for, other profilers).
    pub fn blame(&self) -> Vec<Blame> {
        type Key<'a> = (&'a str, &'a [Frame]);
        let mut waiter_stacks: HashMap<(&str, i64), &[Frame]> = HashMap::new();
        let mut holds: HashMap<Key<'_>, i64> = HashMap::new();
        for s in &self.samples {
            let Some(lock) = s.lock_name.as_deref() else {
                continue;
            };
            if let Some(id) = s.label_num(labels::STACK_ID) {
                waiter_stacks.entry((lock, id)).or_insert(&s.frames);
            }
            if s.release_hold_ns != 0 {
                let hold = holds.entry((lock, &s.frames)).or_default();
                *hold = hold.saturating_add(s.release_hold_ns);
            }
        }
        let mut by_holder: HashMap<Key<'_>, HashMap<Option<i64>, i64>> = HashMap::new();
        for s in self.samples.iter().filter(|s| s.caused_wait_ns != 0) {
            let Some(lock) = s.lock_name.as_deref() else {
                continue;
            };
            let waiter = s.label_num(labels::WAITER_STACK_ID);
            let caused = by_holder
                .entry((lock, &s.frames))
                .or_default()
                .entry(waiter)
                .or_default();
            *caused = caused.saturating_add(s.caused_wait_ns);
        }
        let mut out: Vec<Blame> = by_holder
            .into_iter()
            .map(|((lock, holder), waiters)| {
                let mut waiters: Vec<Waiter> = waiters
                    .into_iter()
                    .map(|(id, ns)| Waiter {
                        frames: id
                            .and_then(|id| waiter_stacks.get(&(lock, id)))
                            .map_or_else(Vec::new, |f| f.to_vec()),
                        caused_wait_ns: ns,
                    })
                    .collect();
                waiters.sort_by(|a, b| {
                    b.caused_wait_ns
                        .cmp(&a.caused_wait_ns)
                        .then_with(|| a.frames.cmp(&b.frames))
                });
                Blame {
                    lock_name: lock.to_owned(),
                    holder: holder.to_vec(),
                    caused_wait_ns: waiters
                        .iter()
                        .fold(0i64, |t, w| t.saturating_add(w.caused_wait_ns)),
                    hold_ns: holds.get(&(lock, holder)).copied().unwrap_or(0),
                    waiters,
                }
            })
            .collect();
        out.sort_by(|a, b| {
            b.caused_wait_ns
                .cmp(&a.caused_wait_ns)
                .then_with(|| a.lock_name.cmp(&b.lock_name))
                .then_with(|| a.holder.cmp(&b.holder))
        });
        out
    }

    /// Every lock name, sorted.
    pub fn lock_names(&self) -> BTreeSet<String> {
        self.samples.iter().filter_map(|s| s.lock_name.clone()).collect()
    }

    /// The samples of one lock name.
    pub fn samples_of<'a>(&'a self, lock_name: &'a str) -> impl Iterator<Item = &'a LockSample> + 'a {
        self.samples
            .iter()
            .filter(move |s| s.lock_name.as_deref() == Some(lock_name))
    }
}

/// Gunzips or un-zstds `bytes` if compressed; returns raw bytes as they are.
pub(crate) fn decompress(bytes: &[u8]) -> Result<Vec<u8>, ReadError> {
    if bytes.is_empty() {
        return Err(ReadError::Empty);
    }
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map_err(|e| ReadError::Decompress {
                format: "gzip",
                message: e.to_string(),
            })?;
        return Ok(out);
    }
    if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return decompress_zstd(bytes);
    }
    Ok(bytes.to_vec())
}

#[cfg(feature = "zstd")]
fn decompress_zstd(bytes: &[u8]) -> Result<Vec<u8>, ReadError> {
    zstd::stream::decode_all(bytes).map_err(|e| ReadError::Decompress {
        format: "zstd",
        message: e.to_string(),
    })
}

#[cfg(not(feature = "zstd"))]
fn decompress_zstd(_bytes: &[u8]) -> Result<Vec<u8>, ReadError> {
    Err(ReadError::ZstdUnsupported)
}

fn from_proto(p: &proto::Profile) -> Result<LockProfile, ReadError> {
    let strings = &p.string_table;
    let s = |index: i64, what: &'static str| -> Result<String, ReadError> {
        usize::try_from(index)
            .ok()
            .and_then(|i| strings.get(i))
            .cloned()
            .ok_or(ReadError::BadIndex {
                what,
                index,
                len: strings.len(),
            })
    };
    let mut sample_types = Vec::with_capacity(p.sample_type.len());
    for vt in &p.sample_type {
        sample_types.push((s(vt.r#type, "string index")?, s(vt.unit, "string index")?));
    }
    let column = |name: &str| sample_types.iter().position(|(t, _)| t == name);
    let columns = [
        column(SAMPLE_TYPES[0].0),
        column(SAMPLE_TYPES[1].0),
        column(SAMPLE_TYPES[2].0),
        column(SAMPLE_TYPES[3].0),
        column(CAUSED_WAIT_TYPE.0),
    ];
    if columns.iter().all(Option::is_none) {
        return Err(ReadError::NotLockProfile(
            sample_types.iter().map(|(t, u)| format!("{t}/{u}")).collect(),
        ));
    }

    let functions: std::collections::HashMap<u64, &proto::Function> =
        p.function.iter().map(|f| (f.id, f)).collect();
    let locations: std::collections::HashMap<u64, &proto::Location> =
        p.location.iter().map(|l| (l.id, l)).collect();

    let mut samples = Vec::new();
    for sample in &p.sample {
        let value = |c: Option<usize>| c.and_then(|i| sample.value.get(i)).copied().unwrap_or(0);
        let values = [
            value(columns[0]),
            value(columns[1]),
            value(columns[2]),
            value(columns[3]),
            value(columns[4]),
        ];
        if values.iter().all(|&v| v == 0) {
            // Another profile type's sample (Datadog's Python profiles mix them).
            continue;
        }
        let mut labels_out = Vec::with_capacity(sample.label.len());
        for l in &sample.label {
            let key = s(l.key, "string index")?;
            let value = if l.str != 0 {
                LabelValue::Str(s(l.str, "string index")?)
            } else {
                LabelValue::Num(l.num)
            };
            labels_out.push((key, value));
        }
        let mut frames = Vec::new();
        for id in &sample.location_id {
            let loc = locations.get(id).ok_or(ReadError::BadIndex {
                what: "location id",
                index: *id as i64,
                len: p.location.len(),
            })?;
            for line in &loc.line {
                let f = functions.get(&line.function_id).ok_or(ReadError::BadIndex {
                    what: "function id",
                    index: line.function_id as i64,
                    len: p.function.len(),
                })?;
                frames.push(Frame {
                    function: s(f.name, "string index")?,
                    file: s(f.filename, "string index")?,
                    line: line.line,
                });
            }
        }
        let lock_name = labels_out.iter().find_map(|(k, v)| match v {
            LabelValue::Str(name) if k == labels::LOCK_NAME => Some(name.clone()),
            _ => None,
        });
        samples.push(LockSample {
            lock_name,
            acquire: values[0],
            acquire_wait_ns: values[1],
            release: values[2],
            release_hold_ns: values[3],
            caused_wait_ns: values[4],
            labels: labels_out,
            frames,
        });
    }
    let period_type = match &p.period_type {
        Some(vt) => Some((s(vt.r#type, "string index")?, s(vt.unit, "string index")?)),
        None => None,
    };
    let mut comments = Vec::with_capacity(p.comment.len());
    for &c in &p.comment {
        comments.push(s(c, "string index")?);
    }
    Ok(LockProfile {
        sample_types,
        samples,
        time_nanos: p.time_nanos,
        duration_nanos: p.duration_nanos,
        period_type,
        period: p.period,
        comments,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LOCK_STRINGS: [&str; 9] = [
        "",
        "lock-acquire",
        "count",
        "lock-acquire-wait",
        "nanoseconds",
        "lock name",
        "app.rs:1:queue",
        "lock-release-hold",
        "cpu",
    ];

    fn arb_profile() -> impl Strategy<Value = proto::Profile> {
        let index = || -2i64..12;
        let value_type = (index(), index()).prop_map(|(t, u)| proto::ValueType { r#type: t, unit: u });
        let label = (index(), index(), any::<i64>()).prop_map(|(key, str, num)| proto::Label {
            key,
            str,
            num,
            num_unit: 0,
        });
        let value = prop_oneof![
            Just(0i64),
            Just(1),
            Just(-1),
            Just(i64::MAX),
            Just(i64::MIN),
            any::<i64>()
        ];
        let sample = (
            proptest::collection::vec(0u64..6, 0..4),
            proptest::collection::vec(value, 0..6),
            proptest::collection::vec(label, 0..3),
        )
            .prop_map(|(location_id, value, label)| proto::Sample {
                location_id,
                value,
                label,
            });
        let line = (0u64..6, any::<i64>()).prop_map(|(function_id, line)| proto::Line {
            function_id,
            line,
            column: 0,
        });
        let location =
            (0u64..6, proptest::collection::vec(line, 0..3)).prop_map(|(id, line)| proto::Location {
                id,
                mapping_id: 0,
                address: 0,
                line,
                is_folded: false,
            });
        let function = (0u64..6, index(), index()).prop_map(|(id, name, filename)| proto::Function {
            id,
            name,
            system_name: name,
            filename,
            start_line: 0,
        });
        (
            proptest::collection::vec(value_type, 0..5),
            proptest::collection::vec(sample, 0..5),
            proptest::collection::vec(location, 0..4),
            proptest::collection::vec(function, 0..4),
            0usize..=LOCK_STRINGS.len(),
            proptest::collection::vec(index(), 0..2),
            proptest::option::of(value_type_strategy()),
        )
            .prop_map(
                |(sample_type, sample, location, function, n_strings, comment, period_type)| proto::Profile {
                    sample_type,
                    sample,
                    mapping: Vec::new(),
                    location,
                    function,
                    string_table: LOCK_STRINGS[..n_strings]
                        .iter()
                        .map(|s| (*s).to_owned())
                        .collect(),
                    drop_frames: 0,
                    keep_frames: 0,
                    time_nanos: 0,
                    duration_nanos: 0,
                    period_type,
                    period: 1,
                    comment,
                    default_sample_type: 0,
                },
            )
    }

    fn value_type_strategy() -> impl Strategy<Value = proto::ValueType> {
        (-2i64..12, -2i64..12).prop_map(|(t, u)| proto::ValueType { r#type: t, unit: u })
    }

    fn gzip(raw: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let _ = enc.write_all(raw);
        enc.finish().unwrap_or_default()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

        /// Fuzz: any bytes decode to a profile or an error, never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = LockProfile::from_bytes(&bytes);
            let mut gz = vec![0x1f, 0x8b];
            gz.extend_from_slice(&bytes);
            let _ = LockProfile::from_bytes(&gz);
            let mut zst = vec![0x28, 0xb5, 0x2f, 0xfd];
            zst.extend_from_slice(&bytes);
            let _ = LockProfile::from_bytes(&zst);
        }

        /// Fuzz: well-formed protobuf with out-of-range indexes and odd
        /// values, compressed or not, whole, truncated or with a byte
        /// flipped: an error or a profile, never a panic.
        #[test]
        fn structured_profiles_never_panic(
            profile in arb_profile(),
            compress in any::<bool>(),
            cut in any::<prop::sample::Index>(),
            flip in proptest::option::of((any::<prop::sample::Index>(), 1u8..=255)),
        ) {
            let raw = profile.encode_to_vec();
            let mut bytes = if compress { gzip(&raw) } else { raw };
            if let Some((at, mask)) = flip {
                if !bytes.is_empty() {
                    let i = at.index(bytes.len());
                    bytes[i] ^= mask;
                }
            }
            let whole = LockProfile::from_bytes(&bytes);
            if let Ok(p) = &whole {
                let _ = p.lock_names();
                let mut merged = p.clone();
                merged.merge(p.clone());
                prop_assert_eq!(merged.samples.len(), 2 * p.samples.len());
            }
            if !bytes.is_empty() {
                let _ = LockProfile::from_bytes(&bytes[..cut.index(bytes.len())]);
            }
        }
    }

    #[test]
    fn out_of_range_string_index_is_an_error() {
        let p = proto::Profile {
            sample_type: vec![proto::ValueType { r#type: 1, unit: 7 }],
            string_table: vec![String::new(), "lock-acquire".to_owned()],
            ..proto::Profile::default()
        };
        let e = LockProfile::from_bytes(&p.encode_to_vec()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "corrupt profile: string index 7 is out of range (2 entries)"
        );
    }

    #[test]
    fn merge_spans_both_periods_and_keeps_all_samples() {
        let base = LockProfile {
            sample_types: vec![("lock-acquire".to_owned(), "count".to_owned())],
            samples: vec![LockSample::default()],
            time_nanos: 100,
            duration_nanos: 50,
            period_type: None,
            period: 1,
            comments: vec!["a".to_owned()],
        };
        let mut later = base.clone();
        later.time_nanos = 200;
        later.duration_nanos = 10;
        later.period = 20;
        later
            .sample_types
            .push(("lock-release".to_owned(), "count".to_owned()));
        let mut merged = base.clone();
        merged.merge(later);
        assert_eq!(
            (merged.time_nanos, merged.duration_nanos, merged.period),
            (100, 110, 20)
        );
        assert_eq!(merged.samples.len(), 2);
        assert_eq!(merged.sample_types.len(), 2);
        assert_eq!(merged.comments, ["a", "a"]);
    }
}
