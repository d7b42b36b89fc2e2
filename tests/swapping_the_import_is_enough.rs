//! A test module written against `std::sync` compiles and passes unchanged
//! when its `use` line is switched to lockprof's types.

mod with_std {
    use std::sync::{Condvar, Mutex, RwLock};
    include!("std_compat/suite.rs");
}

mod with_lockprof {
    use lockprof::{ProfiledCondvar as Condvar, ProfiledMutex as Mutex, ProfiledRwLock as RwLock};
    include!("std_compat/suite.rs");
}
