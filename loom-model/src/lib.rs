//! See tests/stats_slot.rs: a loom model of lockprof's stats-slot protocol.
