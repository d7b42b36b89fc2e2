//! Interning and encoding: string table with `""` at 0, functions and
//! locations deduplicated, ids as non-zero newtypes.

use crate::util::fxhash::FxHashMap as HashMap;
use std::io::Write;
use std::num::NonZeroU64;
use std::sync::Arc;

use prost::Message;

use super::proto;
use super::symbolize::{Frame, Symbolizer};
use super::{labels, CAUSED_WAIT_TYPE, SAMPLE_TYPES};
use crate::site::SiteKey;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct StringId(i64);

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct FunctionId(NonZeroU64);

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct LocationId(NonZeroU64);

#[derive(Default)]
struct Strings {
    index: HashMap<Arc<str>, StringId>,
    table: Vec<String>,
}

impl Strings {
    fn new() -> Self {
        let mut s = Strings::default();
        s.intern("");
        s
    }

    fn intern(&mut self, value: &str) -> StringId {
        if let Some(&id) = self.index.get(value) {
            return id;
        }
        let id = StringId(self.table.len() as i64);
        self.table.push(value.to_owned());
        self.index.insert(Arc::from(value), id);
        id
    }
}

/// A location is keyed by what it says, so the same address trimmed
/// differently at a leaf is a different location.
#[derive(PartialEq, Eq, Hash)]
enum LocationKey {
    Address(usize, usize),
    Synthetic(String),
}

struct Builder {
    strings: Strings,
    functions: HashMap<(Arc<str>, Arc<str>), FunctionId>,
    function_list: Vec<proto::Function>,
    locations: HashMap<LocationKey, LocationId>,
    location_list: Vec<proto::Location>,
}

impl Builder {
    fn function(&mut self, name: &Arc<str>, file: &Arc<str>) -> FunctionId {
        if let Some(&id) = self.functions.get(&(Arc::clone(name), Arc::clone(file))) {
            return id;
        }
        let id = FunctionId(NonZeroU64::MIN.saturating_add(self.function_list.len() as u64));
        let name_id = self.strings.intern(name).0;
        let file_id = self.strings.intern(file).0;
        self.function_list.push(proto::Function {
            id: id.0.get(),
            name: name_id,
            system_name: name_id,
            filename: file_id,
            start_line: 0,
        });
        self.functions.insert((Arc::clone(name), Arc::clone(file)), id);
        id
    }

    fn location(&mut self, key: LocationKey, address: u64, frames: &[Frame]) -> LocationId {
        if let Some(&id) = self.locations.get(&key) {
            return id;
        }
        let id = LocationId(NonZeroU64::MIN.saturating_add(self.location_list.len() as u64));
        let line = frames
            .iter()
            .map(|f| proto::Line {
                function_id: self.function(&f.function, &f.file).0.get(),
                line: f.line as i64,
                column: 0,
            })
            .collect();
        self.location_list.push(proto::Location {
            id: id.0.get(),
            mapping_id: 0,
            address,
            line,
            is_folded: false,
        });
        self.locations.insert(key, id);
        id
    }

    fn synthetic(&mut self, name: String) -> LocationId {
        let frame = Frame {
            function: Arc::from(name.as_str()),
            file: Arc::from(""),
            line: 0,
        };
        self.location(LocationKey::Synthetic(name), 0, std::slice::from_ref(&frame))
    }
}

/// One sample as the encoder takes it, borrowed from what it describes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample<'a> {
    pub(crate) kind: SampleKind,
    /// The `lock name` label, interned once per lock.
    pub(crate) lock: SiteKey,
    /// The `lock mode` label, for read-write locks.
    pub(crate) mode: Option<&'static str>,
    /// `None` for the `<unsampled>` remainder.
    pub(crate) thread: Option<ThreadLabels<'a>>,
    /// The async task, for acquisitions by async locks.
    pub(crate) task: Option<TaskLabels<'a>>,
    /// The span the events happened in.
    pub(crate) span: Option<SpanLabels<'a>>,
    /// `None` for the `<unsampled>` remainder.
    pub(crate) stack: Option<Stack<'a>>,
    pub(crate) count: u64,
    pub(crate) total_ns: u64,
    /// A `lock-acquire` sample's `stack id`, when a caused-wait sample
    /// names its stack.
    pub(crate) stack_id: Option<u32>,
    /// A caused-wait sample's `waiter stack id` (0: not known).
    pub(crate) waiter_stack_id: u32,
}

/// Which of [`SAMPLE_TYPES`] (or [`CAUSED_WAIT_TYPE`]) a sample's count and
/// time go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SampleKind {
    /// `lock-acquire` and `lock-acquire-wait`.
    Acquire,
    /// `lock-release` and `lock-release-hold`.
    Release,
    /// `lock-caused-wait` (its time only).
    Caused,
}

/// The `thread …` labels.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ThreadLabels<'a> {
    pub(crate) id: u64,
    pub(crate) native_id: u64,
    pub(crate) name: &'a str,
}

/// The `task …` labels.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TaskLabels<'a> {
    pub(crate) id: Option<u64>,
    pub(crate) name: Option<&'a str>,
}

/// The `span id`, `local root span id` and `trace endpoint` labels.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpanLabels<'a> {
    pub(crate) span_id: u64,
    pub(crate) local_root_span_id: Option<u64>,
    pub(crate) endpoint: Option<&'a str>,
}

/// A sampled stack's return addresses, leaf first.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stack<'a> {
    pub(crate) ips: &'a [usize],
    /// Frames past the end of `ips` that were not kept.
    pub(crate) omitted: u32,
}

/// What a profile says about the period it covers.
#[derive(Debug, Clone, Default)]
pub(crate) struct PeriodInfo {
    pub(crate) start_unix_ns: i64,
    pub(crate) duration_ns: i64,
    /// Mean number of acquisitions per sampled one.
    pub(crate) period: i64,
    pub(crate) max_frames: usize,
    pub(crate) comments: Vec<String>,
}

fn str_label(b: &mut Builder, key: &str, value: &str) -> proto::Label {
    proto::Label {
        key: b.strings.intern(key).0,
        str: b.strings.intern(value).0,
        num: 0,
        num_unit: 0,
    }
}

fn num_label(b: &mut Builder, key: &str, value: u64) -> proto::Label {
    proto::Label {
        key: b.strings.intern(key).0,
        str: 0,
        num: value as i64,
        num_unit: 0,
    }
}

/// Builds the profile of one period. Each stack's addresses must stay where
/// they are for the whole build: an address stands for one stack.
pub(crate) fn build<'a>(
    samples: impl ExactSizeIterator<Item = Sample<'a>>,
    symbolizer: &mut Symbolizer,
    info: &PeriodInfo,
) -> proto::Profile {
    let mut b = Builder {
        strings: Strings::new(),
        functions: HashMap::default(),
        function_list: Vec::new(),
        locations: HashMap::default(),
        location_list: Vec::new(),
    };
    let sample_type: Vec<proto::ValueType> = SAMPLE_TYPES
        .iter()
        .chain([&CAUSED_WAIT_TYPE])
        .map(|(t, u)| proto::ValueType {
            r#type: b.strings.intern(t).0,
            unit: b.strings.intern(u).0,
        })
        .collect();
    let mut labels_by_site: HashMap<SiteKey, StringId> = HashMap::default();
    // Per-sample work done once: the label keys interned, each thread's
    // labels built, each stack's locations looked up (a flush of 16,000 lock
    // names has 32,000 samples and one stack).
    let lock_name_key = b.strings.intern(labels::LOCK_NAME).0;
    let mut mode_labels: HashMap<&'static str, proto::Label> = HashMap::default();
    let mut thread_labels: HashMap<u64, [proto::Label; 3]> = HashMap::default();
    let mut locations_of: HashMap<(usize, usize, u32, bool), Vec<u64>> = HashMap::default();
    let mut unsampled = None;

    let mut out = Vec::with_capacity(samples.len());
    for s in samples {
        let location_id = match s.stack {
            Some(stack) => {
                let in_task = s.task.is_some_and(|t| t.id.is_some());
                let key = (
                    stack.ips.as_ptr() as usize,
                    stack.ips.len(),
                    stack.omitted,
                    in_task,
                );
                match locations_of.get(&key) {
                    Some(ids) => ids.clone(),
                    None => {
                        let ids = stack_locations(&mut b, symbolizer, &stack, info.max_frames, in_task);
                        locations_of.insert(key, ids.clone());
                        ids
                    }
                }
            }
            None => vec![*unsampled.get_or_insert_with(|| b.synthetic("<unsampled>".to_owned()).0.get())],
        };
        let mut value = vec![0; SAMPLE_TYPES.len() + 1];
        match s.kind {
            SampleKind::Acquire => value[..2].copy_from_slice(&[saturate(s.count), saturate(s.total_ns)]),
            SampleKind::Release => value[2..4].copy_from_slice(&[saturate(s.count), saturate(s.total_ns)]),
            SampleKind::Caused => value[4] = saturate(s.total_ns),
        }
        let name_id = *labels_by_site
            .entry(s.lock)
            .or_insert_with(|| b.strings.intern(&s.lock.label()));
        let mut label = Vec::with_capacity(6);
        label.push(proto::Label {
            key: lock_name_key,
            str: name_id.0,
            num: 0,
            num_unit: 0,
        });
        if let Some(mode) = s.mode {
            let l = mode_labels
                .entry(mode)
                .or_insert_with(|| str_label(&mut b, labels::LOCK_MODE, mode));
            label.push(*l);
        }
        if let Some(t) = s.thread {
            let ls = thread_labels.entry(t.id).or_insert_with(|| {
                [
                    num_label(&mut b, labels::THREAD_ID, t.id),
                    num_label(&mut b, labels::THREAD_NATIVE_ID, t.native_id),
                    str_label(&mut b, labels::THREAD_NAME, t.name),
                ]
            });
            label.extend_from_slice(&ls[..]);
        }
        if let Some(task) = s.task {
            if let Some(id) = task.id {
                label.push(num_label(&mut b, labels::TASK_ID, id));
            }
            if let Some(name) = task.name {
                label.push(str_label(&mut b, labels::TASK_NAME, name));
            }
        }
        if let Some(span) = s.span {
            label.push(num_label(&mut b, labels::SPAN_ID, span.span_id));
            if let Some(root) = span.local_root_span_id {
                label.push(num_label(&mut b, labels::LOCAL_ROOT_SPAN_ID, root));
            }
            if let Some(endpoint) = span.endpoint {
                label.push(str_label(&mut b, labels::TRACE_ENDPOINT, endpoint));
            }
        }
        if let Some(id) = s.stack_id {
            label.push(num_label(&mut b, labels::STACK_ID, u64::from(id)));
        }
        if s.kind == SampleKind::Caused && s.waiter_stack_id != 0 {
            label.push(num_label(
                &mut b,
                labels::WAITER_STACK_ID,
                u64::from(s.waiter_stack_id),
            ));
        }
        out.push(proto::Sample {
            location_id,
            value,
            label,
        });
    }

    let period_type = Some(sample_type[0]);
    let default_sample_type = b.strings.intern(SAMPLE_TYPES[1].0).0;
    let comment = info.comments.iter().map(|c| b.strings.intern(c).0).collect();
    proto::Profile {
        sample_type,
        sample: out,
        mapping: Vec::new(),
        location: b.location_list,
        function: b.function_list,
        string_table: b.strings.table,
        drop_frames: 0,
        keep_frames: 0,
        time_nanos: info.start_unix_ns,
        duration_nanos: info.duration_ns,
        period_type,
        period: info.period.max(1),
        comment,
        default_sample_type,
    }
}

/// The location ids of a sampled stack, leaf first.
fn stack_locations(
    b: &mut Builder,
    symbolizer: &mut Symbolizer,
    stack: &Stack<'_>,
    max_frames: usize,
    in_task: bool,
) -> Vec<u64> {
    let mut location_id = Vec::new();
    let (frames, cut, executor) = symbolizer.user_stack(stack.ips, stack.omitted, max_frames, in_task);
    for frame in &frames {
        let (ip, f) = (frame.ip, frame.frames());
        // A trimmed leaf address keeps fewer inlined frames.
        let id = b.location(LocationKey::Address(ip, f.len()), ip as u64, f);
        location_id.push(id.0.get());
    }
    if cut > 0 {
        let plural = if cut == 1 { "" } else { "s" };
        location_id.push(b.synthetic(format!("<{cut} frame{plural} omitted>")).0.get());
    }
    if executor {
        location_id.push(b.synthetic("<tokio runtime>".to_owned()).0.get());
    }
    location_id
}

/// Encodes and gzips a profile.
pub(crate) fn gzip(profile: &proto::Profile) -> std::io::Result<Vec<u8>> {
    let raw = profile.encode_to_vec();
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(raw.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    enc.write_all(&raw)?;
    enc.finish()
}

/// A pprof value from an unsigned total: the largest `i64` past it, never
/// a wrap to a negative count.
fn saturate(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// `gzipped`, a profile this crate wrote, without lockprof's own
/// `lock-caused-wait` sample type, its samples and its two labels: what a
/// Datadog upload carries unless asked otherwise. A profile without them is
/// returned as it is.
#[cfg(feature = "datadog")]
pub(crate) fn without_caused_wait(gzipped: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(gzipped).read_to_end(&mut raw)?;
    let mut profile = proto::Profile::decode(raw.as_slice())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    let Some(caused) = profile.sample_type.iter().position(|t| {
        profile.string_table.get(t.r#type as usize).map(String::as_str) == Some(CAUSED_WAIT_TYPE.0)
    }) else {
        return Ok(gzipped.to_vec());
    };
    profile.sample_type.remove(caused);
    let ours: Vec<i64> = [labels::STACK_ID, labels::WAITER_STACK_ID]
        .iter()
        .filter_map(|k| profile.string_table.iter().position(|s| s == k).map(|i| i as i64))
        .collect();
    profile.sample.retain_mut(|s| {
        if caused < s.value.len() {
            s.value.remove(caused);
        }
        s.label.retain(|l| !ours.contains(&l.key));
        s.value.iter().any(|&v| v != 0)
    });
    gzip(&profile)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_beyond_i64_saturate_instead_of_turning_negative() {
        assert_eq!(saturate(u64::MAX), i64::MAX);
        assert_eq!(saturate(i64::MAX as u64 + 1), i64::MAX);
        assert_eq!(saturate(42), 42);
    }
}
