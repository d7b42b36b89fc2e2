//! The endpoint's threads and sockets: one thread accepts connections and
//! reads their requests, without blocking on any of them; [`WRITERS`]
//! threads write the responses. Everything is bounded: the connections
//! whose request is being read ([`MAX_READING`]; beyond, they wait, then a
//! 503),
//! the profiles asked and not yet written ([`MAX_IN_PROGRESS`]; beyond, a
//! 429), the time a client may take to send its request ([`HEAD_TIMEOUT`];
//! then a 408) and to read the response ([`WRITE_TIMEOUT`]). No thread
//! waits out a window: the profiler thread queues the response for a writer
//! when the window ends.
//!
//! Requests are read from non-blocking sockets, polled every
//! [`READ_POLL`] while some are being read (the thread blocks in `accept`
//! when none are): a client that connects and sends nothing holds one of
//! [`MAX_READING`] places for [`HEAD_TIMEOUT`], never a thread.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::http::{self, Parsed, Refusal};
use super::{Answer, Ask, Reply};
use crate::record::session::mark_profiler_thread;

/// Threads that write responses.
pub(crate) const WRITERS: usize = 2;
/// Connections whose request is being read. Beyond, new connections wait
/// in the kernel's backlog (which holds no descriptor of the host program);
/// when no place has come free for [`FULL_WAIT`], they are answered 503.
pub(crate) const MAX_READING: usize = 64;
const FULL_WAIT: Duration = Duration::from_secs(1);
/// Profiles asked of the profiler thread and not yet written (open windows
/// included); beyond, 429.
pub(crate) const MAX_IN_PROGRESS: usize = 32;
/// The longest a client may take to send its whole request head.
pub(crate) const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest one write of a response may wait for the client to read.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often requests being read are polled.
const READ_POLL: Duration = Duration::from_millis(2);
/// Connections answered at once, kept open until their client closes (or
/// newer ones push them out): closed with bytes of its request unread, a
/// socket sends a reset, which a client may see before the answer.
const CLOSING: usize = 64;

/// The endpoint, listening. Dropping it stops it: no thread of it is left.
#[derive(Debug)]
pub(crate) struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    /// Dropped to stop the writers.
    stop: Option<Sender<()>>,
    /// Keeps the profiler thread's channel open whatever the reader does.
    _asks: Sender<Ask>,
    reader: Option<JoinHandle<()>>,
    writers: Vec<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    /// Set at stop, under `writing`'s lock.
    stopping: AtomicBool,
    /// Each writer's connection while it writes: shut down at stop, so that
    /// no slow client holds the stop up.
    writing: parking_lot::Mutex<Vec<Option<TcpStream>>>,
    in_progress: AtomicUsize,
}

/// A response queued for a writer.
struct Queued {
    stream: TcpStream,
    bytes: Vec<u8>,
    _progress: InProgress,
}

/// One profile asked and not yet written.
struct InProgress(Arc<Shared>);

impl InProgress {
    fn take(shared: &Arc<Shared>) -> Option<InProgress> {
        let before = shared.in_progress.fetch_add(1, AcqRel);
        if before >= MAX_IN_PROGRESS {
            shared.in_progress.fetch_sub(1, AcqRel);
            return None;
        }
        Some(InProgress(Arc::clone(shared)))
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.in_progress.fetch_sub(1, AcqRel);
    }
}

impl Server {
    /// Listens on `addr` and starts the threads; the profiler thread reads
    /// the returned channel.
    pub(crate) fn start(addr: SocketAddr) -> std::io::Result<(Server, Receiver<Ask>)> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            stopping: AtomicBool::new(false),
            writing: parking_lot::Mutex::new((0..WRITERS).map(|_| None).collect()),
            in_progress: AtomicUsize::new(0),
        });
        let (asks_tx, asks) = crossbeam_channel::bounded(MAX_IN_PROGRESS);
        // Never full: a queued response holds one of the in-progress places.
        let (writes_tx, writes) = crossbeam_channel::bounded(MAX_IN_PROGRESS);
        let (stop_tx, stop) = crossbeam_channel::bounded::<()>(0);
        // Stopped by its drop if a thread fails to start.
        let mut server = Server {
            addr,
            shared: Arc::clone(&shared),
            stop: Some(stop_tx),
            _asks: asks_tx.clone(),
            reader: None,
            writers: Vec::with_capacity(WRITERS),
        };
        for slot in 0..WRITERS {
            let writer = Writer {
                slot,
                shared: Arc::clone(&shared),
                writes: writes.clone(),
                stop: stop.clone(),
            };
            server
                .writers
                .push(spawn(format!("lockprof-http-{slot}"), move || writer.run())?);
        }
        let reader = Reader {
            listener,
            shared,
            asks: asks_tx,
            writes: writes_tx,
            reading: Vec::with_capacity(MAX_READING),
            full_since: None,
            closing: VecDeque::with_capacity(CLOSING),
            failing: false,
        };
        server.reader = Some(spawn("lockprof-http".to_owned(), move || reader.run())?);
        Ok((server, asks))
    }

    /// The address it listens on (with the port chosen, when 0 was asked).
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn stop(&mut self) {
        {
            let mut writing = self.shared.writing.lock();
            self.shared.stopping.store(true, Release);
            for stream in writing.iter_mut().filter_map(Option::take) {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
        if let Some(reader) = self.reader.take() {
            // Blocked in `accept` when it reads nothing: a connection of our
            // own wakes it.
            match TcpStream::connect_timeout(&wake_addr(self.addr), Duration::from_secs(1)) {
                Ok(_) => {
                    let _ = reader.join();
                }
                Err(e) => log::warn!(
                    "lockprof: cannot wake the endpoint's accepting thread ({e}); {} stays bound until the process exits",
                    self.addr
                ),
            }
        }
        self.stop = None;
        for writer in self.writers.drain(..) {
            let _ = writer.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn(name: String, body: impl FnOnce() + Send + 'static) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name(name).spawn(move || {
        // Nothing these threads do is recorded, whatever a logger takes.
        mark_profiler_thread();
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).is_err() {
            log::error!("lockprof: a thread of the on-demand endpoint failed; its requests go unanswered");
        }
    })
}

/// Where a connection reaches a listener on `addr`.
fn wake_addr(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port()),
        _ => addr,
    }
}

/// A connection whose request is being read.
struct Reading {
    stream: TcpStream,
    head: Vec<u8>,
    deadline: Instant,
}

/// The accepting thread.
struct Reader {
    listener: TcpListener,
    shared: Arc<Shared>,
    asks: Sender<Ask>,
    writes: Sender<Queued>,
    reading: Vec<Reading>,
    /// Since when `reading` has been full.
    full_since: Option<Instant>,
    closing: VecDeque<TcpStream>,
    /// Whether `accept` failed last time (logged once per run of failures).
    failing: bool,
}

impl Reader {
    fn run(mut self) {
        loop {
            // Nothing to read: wait for a connection, using no CPU.
            let accepted = self.accept(self.reading.is_empty());
            if self.shared.stopping.load(Acquire) {
                return;
            }
            let read = self.read();
            if !accepted && !read {
                std::thread::sleep(READ_POLL);
            }
        }
    }

    /// Accepts the connections that wait, after waiting for one if `wait`;
    /// returns whether there were any.
    fn accept(&mut self, wait: bool) -> bool {
        if self.reading.len() < MAX_READING {
            self.full_since = None;
        } else if self.full_since.get_or_insert_with(Instant::now).elapsed() < FULL_WAIT {
            // Let them wait in the backlog while the requests read go on.
            return false;
        }
        let mut any = false;
        let mut blocking = wait;
        if self.listener.set_nonblocking(!blocking).is_err() {
            return false;
        }
        loop {
            let accepted = self.listener.accept();
            if blocking {
                blocking = false;
                if self.listener.set_nonblocking(true).is_err() {
                    return any;
                }
            }
            match accepted {
                Ok((stream, _)) => {
                    any = true;
                    self.failing = false;
                    if self.reading.len() < MAX_READING && stream.set_nonblocking(true).is_ok() {
                        self.reading.push(Reading {
                            stream,
                            head: Vec::new(),
                            deadline: Instant::now() + HEAD_TIMEOUT,
                        });
                    } else {
                        let busy = Refusal::new(
                            503,
                            format!(
                                "too many connections: {MAX_READING} requests are being read; retry later"
                            ),
                        );
                        self.refuse(stream, &busy);
                    }
                    if self.shared.stopping.load(Acquire) {
                        return any;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return any,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    // Out of file descriptors, say: the connection waits in
                    // the backlog; try again shortly rather than spin.
                    if !self.failing {
                        log::warn!("lockprof: the on-demand endpoint cannot accept a connection: {e}");
                        self.failing = true;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                    return any;
                }
            }
        }
    }

    /// Reads what has arrived of each request, and acts on those complete
    /// or too late; returns whether any moved.
    fn read(&mut self) -> bool {
        let now = Instant::now();
        let mut moved = false;
        let mut i = 0;
        while i < self.reading.len() {
            let r = &mut self.reading[i];
            let (arrived, ended) = read_some(&r.stream, &mut r.head);
            moved |= arrived;
            let parsed = if arrived {
                http::parse(&r.head)
            } else {
                Parsed::Partial
            };
            let outcome = match parsed {
                Parsed::Profile(window) => Some(Ok(window)),
                Parsed::Refused(refusal) => Some(Err(Some(refusal))),
                // The client went away before its request was whole:
                // nothing to answer.
                Parsed::Partial if ended => Some(Err(None)),
                Parsed::Partial if now < r.deadline => None,
                Parsed::Partial => Some(Err(Some(timed_out()))),
            };
            let Some(outcome) = outcome else {
                i += 1;
                continue;
            };
            moved = true;
            let done = self.reading.swap_remove(i);
            match outcome {
                Ok(window) => self.ask(done.stream, window),
                Err(Some(refusal)) => self.refuse(done.stream, &refusal),
                Err(None) => {}
            }
        }
        moved
    }

    /// Asks the profiler thread for the profile; its answer is written by a
    /// writer.
    fn ask(&mut self, stream: TcpStream, window: Option<Duration>) {
        let Some(progress) = InProgress::take(&self.shared) else {
            let busy = Refusal::new(
                429,
                format!("too many profiles in progress ({MAX_IN_PROGRESS}); retry when one ends"),
            );
            self.refuse(stream, &busy);
            return;
        };
        let writes = self.writes.clone();
        let reply = Reply::new(move |answer| {
            let bytes = match answer {
                Some(Answer::Profile(pprof)) => http::profile_response(&pprof),
                Some(Answer::Failed(e)) => {
                    Refusal::new(500, format!("cannot encode the profile: {e}")).response()
                }
                None => Refusal::new(503, "the profiler stopped before the profile was ready").response(),
            };
            let _ = writes.try_send(Queued {
                stream,
                bytes,
                _progress: progress,
            });
        });
        // Refused, the ask drops its reply, which answers 503.
        let _ = self.asks.try_send(Ask { window, reply });
    }

    /// Answers without blocking: the few hundred bytes of a refusal fit in a
    /// new socket's buffer.
    fn refuse(&mut self, stream: TcpStream, refusal: &Refusal) {
        if stream.set_nonblocking(true).is_ok() {
            let _ = drain(&stream);
            let _ = (&stream).write(&refusal.response());
            let _ = stream.shutdown(Shutdown::Write);
        }
        // Those whose client has closed go quietly.
        self.closing.retain(|s| drain(s).is_ok());
        if self.closing.len() == CLOSING {
            self.closing.pop_front();
        }
        self.closing.push_back(stream);
    }
}

fn timed_out() -> Refusal {
    Refusal::new(
        408,
        format!("no complete request within {} s", HEAD_TIMEOUT.as_secs()),
    )
}

/// Reads what has arrived on a non-blocking socket into `head`, up to
/// [`http::MAX_HEAD`]: whether anything came, and whether the client has
/// closed its end (a request sent whole is still answered) or the socket
/// failed.
fn read_some(mut stream: &TcpStream, head: &mut Vec<u8>) -> (bool, bool) {
    let mut chunk = [0u8; 1024];
    let mut arrived = false;
    while head.len() < http::MAX_HEAD {
        match stream.read(&mut chunk) {
            Ok(0) => return (arrived, true),
            Ok(n) => {
                head.extend_from_slice(&chunk[..n]);
                arrived = true;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(_) => return (arrived, true),
        }
    }
    (arrived, false)
}

/// Reads and discards what has arrived on a non-blocking socket; `Err` when
/// the client has closed (or the socket failed).
fn drain(mut stream: &TcpStream) -> Result<(), ()> {
    let mut sink = [0u8; 4096];
    loop {
        match stream.read(&mut sink) {
            Ok(0) => return Err(()),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(_) => return Err(()),
        }
    }
}

/// A thread that writes the profiles' responses.
struct Writer {
    slot: usize,
    shared: Arc<Shared>,
    writes: Receiver<Queued>,
    stop: Receiver<()>,
}

impl Writer {
    fn run(self) {
        loop {
            crossbeam_channel::select! {
                recv(self.writes) -> queued => if let Ok(queued) = queued { self.write(queued) },
                recv(self.stop) -> _ => break,
            }
        }
        // Stopping: the responses queued still go out (that the profiler
        // stopped, mostly), each given little time.
        while let Ok(queued) = self.writes.try_recv() {
            self.write(queued);
        }
    }

    fn write(&self, queued: Queued) {
        let stream = &queued.stream;
        let timeout = {
            let mut writing = self.shared.writing.lock();
            if self.shared.stopping.load(Acquire) {
                Duration::from_millis(100)
            } else {
                if let Some(slot) = writing.get_mut(self.slot) {
                    *slot = stream.try_clone().ok();
                }
                WRITE_TIMEOUT
            }
        };
        if stream.set_nonblocking(false).is_ok()
            && stream.set_write_timeout(Some(timeout)).is_ok()
            && (&*stream).write_all(&queued.bytes).is_ok()
        {
            let _ = stream.shutdown(Shutdown::Write);
            // What the client sent beyond its request head is read before
            // the close, which would otherwise send a reset.
            if stream.set_nonblocking(true).is_ok() {
                let _ = drain(stream);
            }
        }
        if let Some(slot) = self.shared.writing.lock().get_mut(self.slot) {
            *slot = None;
        }
    }
}
