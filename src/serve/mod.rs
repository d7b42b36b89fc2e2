//! The on-demand endpoint (feature `http`): a small HTTP/1.1 server on the
//! profiler's own threads that answers `GET /debug/pprof/lock?seconds=N`
//! with a profile of the next N seconds and `GET /debug/pprof/lock` with
//! everything since the profiler started, both encoded as the files are.
//!
//! The server only reads requests and writes responses; what a profile
//! holds is the profiler thread's business (`profiler/on_demand.rs`). The
//! two speak through [`Ask`]: the server asks, with a [`Reply`] that writes
//! the response whenever the profiler thread answers, so that no server
//! thread waits out a window.
//!
//! Written on `std::net` rather than with a server crate: the small ones
//! (tiny_http) start a thread per open connection, and a thousand
//! connections to a debugging port must not start a thousand threads in
//! the host program. Here one thread accepts and reads requests and
//! [`server::WRITERS`] threads write responses, whatever comes; `httparse`
//! parses the request head.

mod http;
mod server;
mod settings;

pub(crate) use http::PATH;
pub(crate) use server::Server;
pub use settings::{ServeSettings, MAX_WINDOW_SECONDS};

use std::time::Duration;

/// What the server asks of the profiler thread.
pub(crate) struct Ask {
    /// `Some`: the profile of the next `seconds`; `None`: the profile of
    /// everything since the profiler started.
    pub(crate) window: Option<Duration>,
    pub(crate) reply: Reply,
}

impl std::fmt::Debug for Ask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ask").field("window", &self.window).finish()
    }
}

/// The profiler thread's answer.
#[derive(Debug)]
pub(crate) enum Answer {
    /// The gzip'd pprof.
    Profile(Vec<u8>),
    /// The profile could not be encoded.
    Failed(String),
}

/// Where an answer goes: called on the profiler thread, it only queues the
/// response for a server thread to write, never blocks. Dropped unanswered
/// (the profiler stopped first), it answers that the profiler stopped.
pub(crate) struct Reply {
    send: Option<Box<dyn FnOnce(Option<Answer>) + Send>>,
}

impl Reply {
    pub(crate) fn new(send: impl FnOnce(Option<Answer>) + Send + 'static) -> Reply {
        Reply {
            send: Some(Box::new(send)),
        }
    }

    pub(crate) fn send(mut self, answer: Answer) {
        if let Some(send) = self.send.take() {
            send(Some(answer));
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if let Some(send) = self.send.take() {
            send(None);
        }
    }
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reply")
    }
}
