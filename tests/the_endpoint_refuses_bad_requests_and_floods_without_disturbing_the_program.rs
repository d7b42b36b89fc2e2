//! The on-demand endpoint (feature `http`) answers every bad request with a
//! 4xx and one line saying what is wrong, survives a thousand connections
//! at once without starting a thread per connection, and never stops the
//! program it profiles: a workload keeps locking throughout.

mod common;

use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{http, serial};
use lockprof::{named, ProfiledMutex};

/// A profiled program: a thread that locks a profiled mutex every
/// millisecond until dropped, and counts its acquisitions.
struct Workload {
    done: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Workload {
    fn start() -> Workload {
        let done = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let (d, c) = (Arc::clone(&done), Arc::clone(&count));
        let thread = std::thread::spawn(move || {
            named!(let workload_lock = ProfiledMutex::new(0u64));
            while !d.load(Ordering::Relaxed) {
                *workload_lock.lock().unwrap() += 1;
                c.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        Workload {
            done,
            count,
            thread: Some(thread),
        }
    }

    fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Panics unless the workload locks again within a second.
    fn assert_running(&self, when: &str) {
        let before = self.count();
        let deadline = Instant::now() + Duration::from_secs(1);
        while self.count() == before {
            assert!(Instant::now() < deadline, "the workload stopped {when}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Asserts a refusal: `status`, and a body of one line equal to `line`.
fn assert_refused(response: &http::Response, status: u16, line: &str) {
    assert_eq!(response.status, status, "{}\n{}", response.head, response.text());
    assert_eq!(response.text(), format!("{line}\n"));
    assert!(
        response.head.contains("Content-Type: text/plain"),
        "{}",
        response.head
    );
}

#[test]
fn bad_requests_get_a_4xx_and_a_line_saying_what_is_wrong() {
    let _turn = serial();
    let (handle, addr, _dir) = http::serving_profiler();
    let workload = Workload::start();

    assert_refused(
        &http::get(addr, "/debug/pprof/heap"),
        404,
        "nothing at /debug/pprof/heap: the lock profile is at /debug/pprof/lock (since the start), \
         or /debug/pprof/lock?seconds=N (the next N seconds)",
    );
    assert_refused(
        &http::get(addr, "/debug/pprof/lock?seconds=abc"),
        400,
        "seconds=\"abc\" is not valid: expected a whole number of seconds from 1 to 3600",
    );
    assert_refused(
        &http::get(addr, "/debug/pprof/lock?seconds=1000000000"),
        400,
        "seconds=\"1000000000\" is not valid: expected a whole number of seconds from 1 to 3600",
    );
    assert_eq!(lockprof::MAX_WINDOW_SECONDS, 3600);
    assert_refused(
        &http::raw(
            addr,
            b"POST /debug/pprof/lock HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
        )
        .unwrap(),
        405,
        "method POST is not allowed: use GET",
    );
    let garbage = http::raw(addr, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n").unwrap();
    assert_eq!(garbage.status, 400, "{}", garbage.text());
    assert!(
        garbage.text().starts_with("malformed HTTP request: "),
        "{}",
        garbage.text()
    );
    let mut huge = b"GET /debug/pprof/lock HTTP/1.1\r\nX-Padding: ".to_vec();
    huge.resize(64 * 1024, b'a');
    huge.extend_from_slice(b"\r\n\r\n");
    assert_eq!(http::raw(addr, &huge).unwrap().status, 431);
    workload.assert_running("after the bad requests");

    // Clients that connect and say nothing hold a handler each, for five
    // seconds at most; the others are still answered meanwhile.
    let idle: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(100));
    let asked = Instant::now();
    assert_eq!(http::get(addr, "/nothing").status, 404);
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "answered after {:?}",
        asked.elapsed()
    );
    let timed_out: Vec<_> = idle
        .into_iter()
        .map(|mut s| {
            use std::io::Read;
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let mut text = String::new();
            let _ = s.read_to_string(&mut text);
            text
        })
        .collect();
    for text in &timed_out {
        assert!(text.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{text}");
        assert!(
            text.ends_with("\r\n\r\nno complete request within 5 s\n"),
            "{text}"
        );
    }
    workload.assert_running("after the idle connections");

    // Still answering; a client that closes its end once the request is
    // sent (`printf 'GET …' | nc`) is answered too.
    let ok = http::get(addr, "/debug/pprof/lock");
    assert_eq!(ok.status, 200, "{}", ok.text());
    let mut half_closed = TcpStream::connect(addr).unwrap();
    std::io::Write::write_all(&mut half_closed, b"GET /debug/pprof/lock HTTP/1.0\r\n\r\n").unwrap();
    half_closed.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(http::read_response(&mut half_closed).unwrap().status, 200);
    drop(workload);
    handle.stop();
}

/// Threads in this process, from `/proc/self/status`.
fn threads() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap()
}

/// Raises this process's soft limit of open files to what the test needs.
fn allow_open_files(n: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit for getrlimit to fill.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) }, 0);
    if limit.rlim_cur >= n {
        return;
    }
    assert!(
        limit.rlim_max >= n,
        "this test opens {n} connections; the hard limit of open files is {} (raise it: ulimit -Hn)",
        limit.rlim_max
    );
    limit.rlim_cur = n;
    // SAFETY: a valid rlimit, within the hard limit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
}

#[test]
fn a_thousand_connections_at_once_start_no_thread_and_the_program_goes_on() {
    const CLIENTS: usize = 20;
    const PER_CLIENT: usize = 50;
    let _turn = serial();
    allow_open_files(4096);
    let (handle, addr, _dir) = http::serving_profiler();
    let workload = Workload::start();
    let before = threads();

    let flood_done = AtomicBool::new(false);
    /// Ends the watcher even when a client panics.
    struct Done<'a>(&'a AtomicBool);
    impl Drop for Done<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let (statuses, most_threads, longest_stall) = std::thread::scope(|s| {
        let done = Done(&flood_done);
        let watch = s.spawn(|| {
            let (mut most, mut stall) = (0, Duration::ZERO);
            let (mut last, mut since) = (workload.count(), Instant::now());
            while !flood_done.load(Ordering::Relaxed) {
                most = most.max(threads());
                let now = workload.count();
                if now != last {
                    (last, since) = (now, Instant::now());
                }
                stall = stall.max(since.elapsed());
                std::thread::sleep(Duration::from_millis(10));
            }
            (most, stall)
        });
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                s.spawn(move || {
                    let requests: Vec<&str> = (0..PER_CLIENT)
                        .map(|i| match (c * PER_CLIENT + i) % 4 {
                            0 | 1 => "/debug/pprof/lock?seconds=1",
                            2 => "/debug/pprof/lock",
                            _ => "/debug/pprof/goroutine",
                        })
                        .collect();
                    // Every connection open, its request sent, before any
                    // answer is read. Each request goes as soon as its
                    // connection is made: a client that connected and then
                    // waited (for its other connections, which may queue in
                    // a full backlog for seconds) would rightly get a 408.
                    let mut statuses = Vec::new();
                    let mut streams: Vec<(TcpStream, std::io::Result<()>)> = requests
                        .iter()
                        .map(|target| {
                            use std::io::Write;
                            let mut stream =
                                TcpStream::connect_timeout(&addr, Duration::from_secs(30)).unwrap();
                            let request = format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n");
                            let sent = stream.write_all(request.as_bytes());
                            (stream, sent)
                        })
                        .collect();
                    for ((stream, sent), target) in streams.iter_mut().zip(&requests) {
                        // Refused at once, a connection may be closed before
                        // its request arrives: then sending fails, but the
                        // answer is there to read.
                        let response = http::read_response(stream).unwrap_or_else(|e| {
                            panic!("reading the answer to GET {target} (sent: {sent:?}): {e}")
                        });
                        statuses.push((*target, response.status));
                    }
                    statuses
                })
            })
            .collect();
        let statuses: Vec<Vec<(&str, u16)>> = clients
            .into_iter()
            .map(|c| c.join())
            .collect::<Result<_, _>>()
            .unwrap_or_default();
        drop(done);
        let statuses: Vec<(&str, u16)> = statuses.into_iter().flatten().collect();
        let (most, stall) = watch.join().unwrap();
        (statuses, most, stall)
    });

    assert_eq!(statuses.len(), CLIENTS * PER_CLIENT);
    let count = |f: &dyn Fn(&(&str, u16)) -> bool| statuses.iter().filter(|s| f(s)).count();
    for (target, status) in &statuses {
        let expected: &[u16] = match *target {
            "/debug/pprof/goroutine" => &[404, 503],
            _ => &[200, 429, 503],
        };
        assert!(expected.contains(status), "GET {target}: {status}");
    }
    let windows = count(&|s| s.0.contains("seconds") && s.1 == 200);
    let busy = count(&|s| s.1 == 429 || s.1 == 503);
    assert!(windows > 0, "no window served: {statuses:?}");
    assert!(busy > 0, "a thousand windows at once, none refused?");
    // The flood's own client threads and the watcher, and nothing more: the
    // endpoint's threads were all there before.
    assert!(
        most_threads <= before + CLIENTS + 1,
        "{most_threads} threads during the flood, {before} before, {CLIENTS} clients"
    );
    assert!(
        longest_stall < Duration::from_secs(2),
        "the workload stalled {longest_stall:?}"
    );
    workload.assert_running("after the flood");
    let after = http::get(addr, "/debug/pprof/lock?seconds=1");
    assert_eq!(after.status, 200, "{}", after.text());
    println!(
        "{} connections: {windows} windows served, {} profiles since the start, {busy} told to retry; \
         at most {most_threads} threads ({before} before); longest workload stall {longest_stall:?}",
        statuses.len(),
        count(&|s| s.0 == "/debug/pprof/lock" && s.1 == 200),
    );
    drop(workload);
    handle.stop();
}
