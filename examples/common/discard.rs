//! An exporter that drops every profile: for examples that measure the
//! profiler's cost, not its output.

use lockprof::{EncodedProfile, Export, ExportError};

/// Drops every profile.
pub struct Discard;

impl Export for Discard {
    fn export(&mut self, _profile: &EncodedProfile) -> Result<(), ExportError> {
        Ok(())
    }
    fn describe(&self) -> String {
        "discarded".into()
    }
}
