//! A plain HTTP/1.1 GET over `std::net`, for the on-demand endpoint's tests.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A response: its status, and its body (whatever followed the head).
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Response {
    /// Whether the body has the `Content-Length` the head announced.
    fn complete(&self) -> bool {
        self.head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|n| n.trim().parse::<usize>().ok())
            .is_some_and(|n| self.body.len() >= n)
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `request` as given and reads the response.
pub fn raw(addr: SocketAddr, request: &[u8]) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    stream.write_all(request)?;
    read_response(&mut stream)
}

/// Reads one response: its head, then `Content-Length` bytes (to the end
/// without one). A reset after the whole response is not an error, as for
/// any HTTP client.
pub fn read_response(stream: &mut TcpStream) -> std::io::Result<Response> {
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => match parse(&bytes) {
                Ok(r) if r.complete() => return Ok(r),
                _ => return Err(e),
            },
        }
        if parse(&bytes).is_ok_and(|r| r.complete()) {
            break;
        }
    }
    parse(&bytes)
}

/// `GET target`.
pub fn get(addr: SocketAddr, target: &str) -> Response {
    let request = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    raw(addr, request.as_bytes()).unwrap_or_else(|e| panic!("GET {target}: {e}"))
}

fn parse(bytes: &[u8]) -> std::io::Result<Response> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no complete response head"))?;
    let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status"))?;
    Ok(Response {
        status,
        head,
        body: bytes[end + 4..].to_vec(),
    })
}

/// A profiler at capture 100 % serving on-demand profiles on a free
/// loopback port, writing its files (one an hour) under a directory of its
/// own, and the port it serves on.
#[cfg(feature = "http")]
pub fn serving_profiler() -> (lockprof::ProfilerHandle, SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let handle = lockprof::Profiler::builder()
        .ignore_env()
        .capture_pct(100.0)
        .output_pprof(dir.path().join("live"))
        .flush_interval(Duration::from_secs(3600))
        .serve("127.0.0.1:0")
        .start()
        .unwrap();
    let addr = handle.http_addr().expect("the endpoint listens");
    (handle, addr, dir)
}
