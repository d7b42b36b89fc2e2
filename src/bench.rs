//! What the benchmarks in `benches/` measure below the public API; reached
//! through the hidden `lockprof::__bench`, never documented.

use crate::encode::Encoder;
use crate::record::session::Period;

pub use crate::record::bench::{eh_frame_and_backtrace, eh_frame_truncated_walks, sampled_event};

/// One period's aggregated events, ready to be flushed.
#[derive(Debug, Clone)]
pub struct FlushBatch(Period);

/// The profiler thread's work at a flush, on synthetic but real-code
/// addresses: the profiler's own encoder weighs, symbolizes (with its
/// cache), builds, encodes and gzips.
#[derive(Debug)]
pub struct FlushFixture {
    batch: FlushBatch,
    encoder: Encoder,
}

impl FlushFixture {
    /// A period with `stacks` distinct stacks of `depth` frames, each an
    /// acquire and a release, over 16 locks and 4 threads.
    pub fn new(stacks: usize, depth: usize) -> Self {
        let mut fixture = FlushFixture {
            batch: FlushBatch(crate::record::bench::period(stacks, depth)),
            encoder: Encoder::default(),
        };
        // Warm the symbolizer's cache, as every flush after the first finds it.
        fixture.flush(fixture.batch());
        fixture
    }

    /// A copy of the period's events, for one [`flush`](Self::flush).
    pub fn batch(&self) -> FlushBatch {
        self.batch.clone()
    }

    /// Flushes one period; returns the size of the gzip'd profile.
    pub fn flush(&mut self, batch: FlushBatch) -> usize {
        self.encoder
            .encode(batch.0, &mut || {})
            .map(|e| e.gzipped_pprof.len())
            .unwrap_or(0)
    }
}
