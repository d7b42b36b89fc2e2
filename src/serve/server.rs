//! The endpoint's threads and sockets: one thread accepts, [`HANDLERS`]
//! threads read requests and write responses. Everything is bounded: the
//! connections waiting for a handler ([`QUEUE`]; beyond, a 503), the
//! profiles asked and not yet written ([`MAX_IN_PROGRESS`]; beyond, a 429),
//! the time a client may take to send its request ([`HEAD_TIMEOUT`]) and to
//! read the response ([`WRITE_TIMEOUT`]). A window's handler does not wait
//! for it: the profiler thread queues the response for any handler to
//! write when the window ends.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use super::http::{self, Parsed, Refusal};
use super::{Answer, Ask, Reply};
use crate::record::session::mark_profiler_thread;

/// Threads that read requests and write responses.
pub(crate) const HANDLERS: usize = 4;
/// Accepted connections waiting for a handler; beyond, the accepting thread
/// answers 503 itself.
pub(crate) const QUEUE: usize = 64;
/// Profiles asked of the profiler thread and not yet written (open windows
/// included); beyond, 429.
pub(crate) const MAX_IN_PROGRESS: usize = 32;
/// The longest a client may take to send its whole request head.
pub(crate) const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest one write of a response may wait for the client to read.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections answered 503 by the accepting thread, kept open a little
/// while the client reads the answer: closed at once with its request
/// unread, a socket sends a reset that can destroy the answer in flight.
const CLOSING: usize = 64;
/// How long a handler waits for a client to close after the response.
const LINGER: Duration = Duration::from_millis(200);

/// The endpoint, listening. Dropping it stops it: no thread of it is left.
#[derive(Debug)]
pub(crate) struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    /// Dropped to wake the handlers at stop.
    stop: Option<Sender<()>>,
    accept: Option<JoinHandle<()>>,
    handlers: Vec<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    /// Set at stop, under `busy`'s lock.
    stopping: AtomicBool,
    /// Each handler's connection while it reads or writes: shut down at
    /// stop, so that no slow client holds the stop up.
    busy: parking_lot::Mutex<Vec<Option<TcpStream>>>,
    in_progress: AtomicUsize,
}

/// A response queued for a handler to write.
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

/// What every handler holds.
struct Handler {
    slot: usize,
    shared: Arc<Shared>,
    conns: Receiver<TcpStream>,
    writes: Receiver<Queued>,
    write_tx: Sender<Queued>,
    asks: Sender<Ask>,
    stop: Receiver<()>,
}

impl Server {
    /// Listens on `addr` and starts the threads; the profiler thread reads
    /// the returned channel.
    pub(crate) fn start(addr: SocketAddr) -> std::io::Result<(Server, Receiver<Ask>)> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            stopping: AtomicBool::new(false),
            busy: parking_lot::Mutex::new((0..HANDLERS).map(|_| None).collect()),
            in_progress: AtomicUsize::new(0),
        });
        let (asks_tx, asks) = crossbeam_channel::bounded(MAX_IN_PROGRESS);
        let (conns_tx, conns) = crossbeam_channel::bounded(QUEUE);
        let (write_tx, writes) = crossbeam_channel::bounded(MAX_IN_PROGRESS);
        let (stop_tx, stop) = crossbeam_channel::bounded(0);
        // Stopped by its drop if a thread fails to start.
        let mut server = Server {
            addr,
            shared: Arc::clone(&shared),
            stop: Some(stop_tx),
            accept: None,
            handlers: Vec::with_capacity(HANDLERS),
        };
        for slot in 0..HANDLERS {
            let handler = Handler {
                slot,
                shared: Arc::clone(&shared),
                conns: conns.clone(),
                writes: writes.clone(),
                write_tx: write_tx.clone(),
                asks: asks_tx.clone(),
                stop: stop.clone(),
            };
            server
                .handlers
                .push(spawn(format!("lockprof-http-{slot}"), move || handler.run())?);
        }
        let accepting = Arc::clone(&shared);
        server.accept = Some(spawn("lockprof-http".to_owned(), move || {
            accept(&listener, &conns_tx, &accepting)
        })?);
        Ok((server, asks))
    }

    /// The address it listens on (with the port chosen, when 0 was asked).
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn stop(&mut self) {
        {
            let mut busy = self.shared.busy.lock();
            self.shared.stopping.store(true, Release);
            for stream in busy.iter_mut().filter_map(Option::take) {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
        self.stop = None;
        if let Some(accept) = self.accept.take() {
            // Blocked in `accept`: a connection of our own wakes it.
            match TcpStream::connect_timeout(&wake_addr(self.addr), Duration::from_secs(1)) {
                Ok(_) => {
                    let _ = accept.join();
                }
                Err(e) => log::warn!(
                    "lockprof: cannot wake the endpoint's accepting thread ({e}); {} stays bound until the process exits",
                    self.addr
                ),
            }
        }
        for handler in self.handlers.drain(..) {
            let _ = handler.join();
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

/// The accepting thread: hands each connection to the handlers, or answers
/// 503 when too many wait.
fn accept(listener: &TcpListener, conns: &Sender<TcpStream>, shared: &Shared) {
    let mut closing: VecDeque<TcpStream> = VecDeque::with_capacity(CLOSING);
    let mut failing = false;
    loop {
        let accepted = listener.accept();
        if shared.stopping.load(Acquire) {
            return;
        }
        match accepted {
            Ok((stream, _)) => {
                failing = false;
                match conns.try_send(stream) {
                    Ok(()) => {}
                    Err(TrySendError::Full(stream)) => {
                        let busy = Refusal::new(
                            503,
                            format!(
                                "too many connections: {QUEUE} already wait for the endpoint; retry later"
                            ),
                        );
                        refuse_at_once(stream, &busy, &mut closing);
                    }
                    Err(TrySendError::Disconnected(_)) => return,
                }
            }
            Err(e) => {
                // Out of file descriptors, say: the connection waits in the
                // backlog; try again shortly rather than spin.
                if !failing {
                    log::warn!("lockprof: the on-demand endpoint cannot accept a connection: {e}");
                    failing = true;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Answers without reading more than what has arrived and without blocking:
/// the accepting thread must go on accepting.
fn refuse_at_once(stream: TcpStream, refusal: &Refusal, closing: &mut VecDeque<TcpStream>) {
    if stream.set_nonblocking(true).is_ok() {
        let mut sink = [0u8; 4096];
        let _ = (&stream).read(&mut sink);
        let _ = (&stream).write(&refusal.response());
        let _ = stream.shutdown(Shutdown::Write);
    }
    if closing.len() == CLOSING {
        closing.pop_front();
    }
    closing.push_back(stream);
}

impl Handler {
    fn run(self) {
        loop {
            // Responses first: theirs are the requests that came first.
            if let Ok(write) = self.writes.try_recv() {
                self.write(write);
                continue;
            }
            crossbeam_channel::select! {
                recv(self.writes) -> write => if let Ok(write) = write { self.write(write) },
                recv(self.conns) -> conn => match conn {
                    Ok(stream) => self.serve(stream),
                    Err(_) => break,
                },
                recv(self.stop) -> _ => break,
            }
        }
        // Stopping: the responses queued still go out (the profiler
        // stopped, mostly); the connections waiting are told.
        while let Ok(write) = self.writes.try_recv() {
            self.write(write);
        }
        let stopping = Refusal::new(503, "the profiler is stopping");
        while let Ok(stream) = self.conns.try_recv() {
            let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
            let _ = (&stream).write_all(&stopping.response());
        }
    }

    /// Registers `stream` as this handler's, unless the server is stopping.
    fn register(&self, stream: &TcpStream) -> bool {
        let mut busy = self.shared.busy.lock();
        if self.shared.stopping.load(Acquire) {
            return false;
        }
        if let Some(slot) = busy.get_mut(self.slot) {
            *slot = stream.try_clone().ok();
        }
        true
    }

    fn unregister(&self) {
        if let Some(slot) = self.shared.busy.lock().get_mut(self.slot) {
            *slot = None;
        }
    }

    fn serve(&self, stream: TcpStream) {
        if !self.register(&stream) {
            return;
        }
        let _ = stream.set_nodelay(true);
        let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
        match read_request(&stream) {
            Ok(window) => {
                self.unregister();
                self.ask(stream, window);
            }
            Err(refusal) => {
                if let Some(refusal) = refusal {
                    respond(&stream, &refusal.response());
                }
                self.unregister();
            }
        }
    }

    /// Asks the profiler thread for the profile; its answer is written by
    /// whichever handler is free then.
    fn ask(&self, stream: TcpStream, window: Option<Duration>) {
        let Some(progress) = InProgress::take(&self.shared) else {
            let busy = Refusal::new(
                429,
                format!("too many profiles in progress ({MAX_IN_PROGRESS}); retry when one ends"),
            );
            respond(&stream, &busy.response());
            return;
        };
        let writes = self.write_tx.clone();
        let reply = Reply::new(move |answer| {
            let bytes = match answer {
                Some(Answer::Profile(pprof)) => http::profile_response(&pprof),
                Some(Answer::Failed(e)) => {
                    Refusal::new(500, format!("cannot encode the profile: {e}")).response()
                }
                None => Refusal::new(503, "the profiler stopped before the profile was ready").response(),
            };
            // Never full: a write holds one of the MAX_IN_PROGRESS tokens.
            let _ = writes.try_send(Queued {
                stream,
                bytes,
                _progress: progress,
            });
        });
        // Refused, the ask drops its reply, which answers 503.
        let _ = self.asks.try_send(Ask { window, reply });
    }

    fn write(&self, write: Queued) {
        if self.register(&write.stream) {
            respond(&write.stream, &write.bytes);
            self.unregister();
        } else {
            let _ = write.stream.set_write_timeout(Some(Duration::from_millis(100)));
            let _ = (&write.stream).write_all(&write.bytes);
        }
    }
}

/// Reads the request head: the profile asked for, or the refusal to send
/// (`None`: the client went away, nothing to answer).
fn read_request(mut stream: &TcpStream) -> Result<Option<Duration>, Option<Refusal>> {
    let deadline = Instant::now() + HEAD_TIMEOUT;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let timed_out = || {
            Some(Refusal::new(
                408,
                format!("no complete request within {} s", HEAD_TIMEOUT.as_secs()),
            ))
        };
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return Err(timed_out());
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Err(None),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                match http::parse(&buf) {
                    Parsed::Partial => {}
                    Parsed::Profile(window) => return Ok(window),
                    Parsed::Refused(refusal) => return Err(Some(refusal)),
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(timed_out())
            }
            Err(_) => return Err(None),
        }
    }
}

/// Writes a whole response, then lets the client close first: closed with
/// bytes of its request unread, the socket would send a reset that can
/// destroy the response before the client reads it.
fn respond(mut stream: &TcpStream, bytes: &[u8]) {
    if stream.write_all(bytes).is_err() {
        return;
    }
    let _ = stream.shutdown(Shutdown::Write);
    let deadline = Instant::now() + LINGER;
    let mut sink = [0u8; 4096];
    let mut drained = 0;
    while drained < 64 * 1024 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(n) => drained += n,
        }
    }
}
