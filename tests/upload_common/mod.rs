//! Helpers shared by the upload tests: a raw HTTP client, a multipart parser,
//! a scripted agent on loopback, Datadog's test agent, and a small locking
//! workload.

#![allow(dead_code)]

pub mod test_agent;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lockprof::{named, ProfiledMutex};

/// `GET path` over HTTP/1.1 with `Connection: close`: status and body.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let (head, body) = split_head(&raw).ok_or_else(|| std::io::Error::other("no HTTP head"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status"))?;
    Ok((status, body.to_vec()))
}

fn split_head(raw: &[u8]) -> Option<(String, &[u8])> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    Some((String::from_utf8_lossy(&raw[..end]).into_owned(), &raw[end + 4..]))
}

/// One part of a `multipart/form-data` body.
#[derive(Debug, Clone)]
pub struct Part {
    pub name: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// Parses a `multipart/form-data` body given its `Content-Type` header.
pub fn parse_multipart(content_type: &str, body: &[u8]) -> Vec<Part> {
    let boundary = content_type
        .split(';')
        .map(str::trim)
        .find_map(|p| p.strip_prefix("boundary="))
        .unwrap_or_else(|| panic!("no boundary in {content_type:?}"))
        .trim_matches('"');
    assert!(content_type.starts_with("multipart/form-data"), "{content_type}");
    let delim = format!("--{boundary}");
    let delim = delim.as_bytes();
    let mut parts = Vec::new();
    let mut pos = find(body, delim, 0).expect("first boundary");
    loop {
        pos += delim.len();
        if body[pos..].starts_with(b"--") {
            break;
        }
        assert!(body[pos..].starts_with(b"\r\n"), "CRLF after boundary");
        pos += 2;
        let next = find(body, delim, pos).expect("closing boundary");
        let chunk = &body[pos..next - 2]; // drop the CRLF before the boundary
        let head_end = find(chunk, b"\r\n\r\n", 0).expect("part headers");
        let head = String::from_utf8_lossy(&chunk[..head_end]).into_owned();
        let mut part = Part {
            name: String::new(),
            filename: None,
            content_type: None,
            body: chunk[head_end + 4..].to_vec(),
        };
        for line in head.split("\r\n") {
            let (k, v) = line.split_once(':').expect("header line");
            match k.trim().to_ascii_lowercase().as_str() {
                "content-disposition" => {
                    for item in v.split(';').map(str::trim) {
                        if let Some(n) = item.strip_prefix("name=") {
                            part.name = n.trim_matches('"').to_owned();
                        } else if let Some(f) = item.strip_prefix("filename=") {
                            part.filename = Some(f.trim_matches('"').to_owned());
                        }
                    }
                }
                "content-type" => part.content_type = Some(v.trim().to_owned()),
                _ => {}
            }
        }
        parts.push(part);
        pos = next;
    }
    parts
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// What the scripted agent does with its n-th request (0-based).
#[derive(Debug, Clone, Copy)]
pub enum Reply {
    Status(u16),
    /// Reads the request, never answers (until the agent is dropped).
    Hang,
    /// Reads the request and closes the connection without an answer.
    Close,
}

/// A request the scripted agent received.
#[derive(Debug, Clone)]
pub struct Received {
    pub head: String,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.split("\r\n").skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

/// An HTTP server on loopback answering by script.
pub struct ScriptedAgent {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ScriptedAgent {
    pub fn start(script: impl Fn(usize) -> Reply + Send + 'static) -> Self {
        Self::start_at("127.0.0.1:0".parse().expect("address"), script)
    }

    /// As [`start`](Self::start), listening on `addr`: an agent dropped and
    /// started again on its address is an agent that went down and came back.
    pub fn start_at(addr: SocketAddr, script: impl Fn(usize) -> Reply + Send + 'static) -> Self {
        let listener = TcpListener::bind(addr).expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (rec, st) = (Arc::clone(&received), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let mut hung = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(120);
            while !st.load(Ordering::Relaxed) && Instant::now() < deadline {
                let Ok((mut s, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let _ = s.set_nonblocking(false);
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let Some(req) = read_request(&mut s) else { continue };
                let n = {
                    let mut r = rec.lock().unwrap();
                    r.push(req);
                    r.len() - 1
                };
                match script(n) {
                    Reply::Status(code) => {
                        let _ = write!(
                            s,
                            "HTTP/1.1 {code} Scripted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        );
                    }
                    Reply::Hang => hung.push(s),
                    Reply::Close => drop(s),
                }
            }
        });
        ScriptedAgent {
            addr,
            received,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for ScriptedAgent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read_request(s: &mut TcpStream) -> Option<Received> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        let n = s.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(p) = find(&raw, b"\r\n\r\n", 0) {
            break p;
        }
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let len: usize = head
        .split("\r\n")
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = raw[head_end + 4..].to_vec();
    while body.len() < len {
        let n = s.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&buf[..n]);
    }
    Some(Received {
        head,
        body,
        at: Instant::now(),
    })
}

/// A port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

named!(
    static UPLOAD_TEST_COUNTER: ProfiledMutex<u64> = ProfiledMutex::new(0);
);

/// Four threads taking two named locks; returns the lock names' suffixes.
pub fn workload(iterations: usize) -> [&'static str; 2] {
    named!(let upload_test_local = Arc::new(ProfiledMutex::new(Vec::<usize>::new())));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let local = Arc::clone(&upload_test_local);
            std::thread::spawn(move || {
                for i in 0..iterations {
                    *UPLOAD_TEST_COUNTER.lock().unwrap() += 1;
                    local.lock().unwrap().push(i);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    ["UPLOAD_TEST_COUNTER", "upload_test_local"]
}
