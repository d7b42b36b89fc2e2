//! One period from the recorder to a gzip'd pprof: weigh, build, gzip. The
//! profiler thread and the flush benchmark both encode through [`Encoder`].

use std::time::SystemTime;

use crate::pprof::{self, symbolize::Symbolizer, PeriodInfo};
use crate::record::report::{self, WeightedSample};
use crate::record::session::{Period, MAX_LOCK_NAMES};
use crate::record::{blame, EventKind};
use crate::util::fxhash::FxHashSet;

/// Encodes periods, keeping the symbolizer's cache from one to the next.
#[derive(Debug, Default)]
pub(crate) struct Encoder {
    symbolizer: Symbolizer,
}

/// One period, encoded.
#[derive(Debug)]
pub(crate) struct Encoded {
    pub(crate) gzipped_pprof: Vec<u8>,
    /// Samples written.
    pub(crate) samples: u64,
}

impl Encoder {
    /// Weighs `period`'s samples, builds its profile and gzips it.
    /// `between_steps` runs after each of the long steps that succeeded:
    /// the profiler drains the threads' queues there, so that they do not
    /// fill while this period is written.
    pub(crate) fn encode(
        &mut self,
        period: Period,
        between_steps: &mut dyn FnMut(),
    ) -> std::io::Result<Encoded> {
        let pct = period.capture_pct;
        let accuracy = report::accuracy(&period.samples, &period.totals, pct);
        let mut comments = comments(&period);
        comments.extend(accuracy.iter().map(|a| a.to_comment()));
        let info = PeriodInfo {
            start_unix_ns: period
                .start
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_nanos() as i64)
                .unwrap_or(0),
            duration_ns: period.duration.as_nanos() as i64,
            period: if pct > 0.0 {
                (100.0 / pct).round() as i64
            } else {
                0
            },
            max_frames: period.max_frames,
            comments,
        };
        let weighted = report::weigh(period.samples, &period.totals, pct);
        // The waiters' stacks that caused-wait samples name get a `stack id`.
        let waiters: FxHashSet<u32> = weighted
            .iter()
            .filter(|s| s.kind == EventKind::Caused && s.peer != 0)
            .map(|s| s.peer)
            .collect();
        let profile = pprof::build(
            weighted.iter().map(|s| as_pprof(s, &waiters)),
            &mut self.symbolizer,
            &info,
        );
        between_steps();
        let samples = profile.sample.len() as u64;
        let gzipped_pprof = pprof::gzip(&profile)?;
        between_steps();
        Ok(Encoded {
            gzipped_pprof,
            samples,
        })
    }
}

/// What the profile says of how it was recorded, before the accuracy
/// comments.
fn comments(period: &Period) -> Vec<String> {
    let mut comments = vec![
        format!(
            "lockprof {}: capture_pct={}",
            env!("CARGO_PKG_VERSION"),
            period.capture_pct
        ),
        format!(
            "events recorded: {}, dropped (queue full): {}",
            period.recorded, period.dropped
        ),
    ];
    if period.internal_panics > 0 {
        comments.push(format!("internal panics caught: {}", period.internal_panics));
    }
    if period.truncated_walks > 0 {
        comments.push(format!(
            "stack walks ended early at a frame the unwinder could not unwind: {} since the process started",
            period.truncated_walks
        ));
    }
    if period.uncounted > 0 {
        comments.push(format!(
            "acquisitions not counted, of lock names beyond the first {MAX_LOCK_NAMES}: {} since the process started",
            period.uncounted
        ));
    }
    comments
}

/// A weighed sample as the encoder takes it.
fn as_pprof<'a>(s: &'a WeightedSample, waiters: &FxHashSet<u32>) -> pprof::Sample<'a> {
    let stack_id = match (s.kind, &s.stack) {
        (EventKind::Acquire, Some(stack)) if !waiters.is_empty() => {
            Some(blame::peer_id(stack.hash)).filter(|id| waiters.contains(id))
        }
        _ => None,
    };
    pprof::Sample {
        kind: match s.kind {
            EventKind::Acquire => pprof::SampleKind::Acquire,
            EventKind::Release => pprof::SampleKind::Release,
            EventKind::Caused => pprof::SampleKind::Caused,
        },
        stack_id,
        waiter_stack_id: s.peer,
        lock: s.site,
        mode: s.mode.label(),
        thread: s.thread.as_deref().map(|t| pprof::ThreadLabels {
            id: t.id,
            native_id: t.native_id,
            name: &t.name,
        }),
        task: s.task.as_ref().map(|t| pprof::TaskLabels {
            id: t.id,
            name: t.name.as_deref(),
        }),
        span: s.span.as_ref().map(|span| pprof::SpanLabels {
            span_id: span.span_id,
            local_root_span_id: span.local_root_span_id,
            endpoint: span.endpoint.as_deref(),
        }),
        stack: s.stack.as_ref().map(|st| pprof::Stack {
            ips: &st.ips,
            omitted: st.omitted,
        }),
        count: s.count,
        total_ns: s.total_ns,
    }
}
