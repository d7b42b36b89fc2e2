//! Shared by the production stress tests.
