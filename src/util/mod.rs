//! Helpers with no knowledge of locks or profiles, used by the recording
//! core and the encoder alike.

pub(crate) mod fxhash;
