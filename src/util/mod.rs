//! Helpers with no knowledge of locks or profiles, used by the recording
//! core and the encoder alike.

pub(crate) mod fxhash;

/// A value on cache lines of its own: 128 bytes, since x86's spatial
/// prefetcher pulls lines in pairs (the size crossbeam's `CachePadded` uses
/// there). For a global read on every lock operation, so that no write to a
/// neighbouring global makes those reads miss.
#[repr(align(128))]
pub(crate) struct OwnLines<T>(pub(crate) T);

impl<T> std::ops::Deref for OwnLines<T> {
    type Target = T;
    #[inline(always)]
    fn deref(&self) -> &T {
        &self.0
    }
}
