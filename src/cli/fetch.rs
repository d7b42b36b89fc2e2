//! `http://` inputs: a profile fetched with one GET, as `go tool pprof`
//! fetches one (`lockprof top http://127.0.0.1:6061/debug/pprof/lock?seconds=5`).
//! HTTP/1.0, so that the server sends the body whole and closes.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::{Duration, Instant};

/// How long a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the server may take beyond the `seconds` asked for.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest response read.
const MAX_RESPONSE: usize = 1 << 30;

/// Whether `input` is a URL rather than a path.
pub(crate) fn is_url(input: &Path) -> bool {
    input
        .to_str()
        .is_some_and(|s| s.starts_with("http://") || s.starts_with("https://"))
}

/// The run a URL's profile belongs to: its host and port.
pub(crate) fn run_name(url: &str) -> String {
    split(url).map_or_else(|_| url.to_owned(), |(authority, _)| authority.to_owned())
}

/// The body of a `200 OK` answer to `GET url`; the error says what failed.
pub(crate) fn fetch(url: &str) -> Result<Vec<u8>, String> {
    let (authority, target) = split(url)?;
    let (host, port) = host_port(authority)?;
    // `?seconds=N` asks for the next N seconds: wait that long, and more.
    let seconds = target
        .split_once('?')
        .into_iter()
        .flat_map(|(_, q)| q.split('&'))
        .find_map(|p| p.strip_prefix("seconds="))
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(seconds) + ANSWER_TIMEOUT;
    let addrs: Vec<_> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    let mut last = format!("{host} has no address");
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = format!("cannot connect to {addr}: {e}"),
        }
    }
    let mut stream = stream.ok_or(last)?;
    let request = format!(
        "GET {target} HTTP/1.0\r\nHost: {authority}\r\nUser-Agent: lockprof/{}\r\nAccept: */*\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("cannot send the request: {e}"))?;
    let mut response = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return Err(format!(
                "no answer within {} s",
                (Duration::from_secs(seconds) + ANSWER_TIMEOUT).as_secs()
            ));
        }
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) if response.len() + n > MAX_RESPONSE => {
                return Err(format!("the answer is larger than {MAX_RESPONSE} bytes"))
            }
            Ok(n) => response.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // A reset after the whole answer is no failure.
            Err(e) => match body(&response) {
                Ok(Some(body)) => return Ok(body),
                _ => return Err(format!("cannot read the answer: {e}")),
            },
        }
    }
    body(&response)?.ok_or_else(|| "the answer ended before its head did".to_owned())
}

/// `(host:port, /path?query)` of an `http://` URL.
fn split(url: &str) -> Result<(&str, &str), String> {
    if url.starts_with("https://") {
        return Err(
            "https is not supported: lockprof fetches http:// URLs (the endpoint serves plain HTTP)"
                .to_owned(),
        );
    }
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| "not an http:// URL".to_owned())?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, target) = rest.split_at(end);
    if authority.is_empty() {
        return Err("no host in the URL".to_owned());
    }
    Ok((authority, if target.is_empty() { "/" } else { target }))
}

fn host_port(authority: &str) -> Result<(&str, u16), String> {
    let (host, port) = match authority.strip_prefix('[') {
        // [::1]:6061
        Some(v6) => match v6.split_once(']') {
            Some((host, rest)) => (host, rest.strip_prefix(':')),
            None => return Err(format!("malformed host {authority:?}")),
        },
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    let port = match port {
        None => 80,
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| format!("malformed port {p:?} in the URL"))?,
    };
    Ok((host, port))
}

/// The body of a whole answer: `Ok(None)` while its head is incomplete;
/// `Err` for any answer but `200 OK`, with the server's reason.
fn body(response: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Response::new(&mut headers);
    let head_len = match parsed.parse(response) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("not an HTTP answer: {e}")),
    };
    let body = &response[head_len..];
    let code = parsed.code.unwrap_or(0);
    if code != 200 {
        // The server's one-line reason, as lockprof's endpoint and Go's
        // net/http/pprof give it.
        let text = String::from_utf8_lossy(body);
        let line = text.lines().next().unwrap_or("").trim();
        let reason = parsed.reason.unwrap_or("");
        return Err(if line.is_empty() {
            format!("the server answered {code} {reason}")
        } else {
            format!("the server answered {code} {reason}: {line}")
        });
    }
    let header = |name: &str| {
        parsed
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_owned())
    };
    if header("Transfer-Encoding").is_some_and(|t| !t.eq_ignore_ascii_case("identity")) {
        return Err("the server sent a chunked answer to an HTTP/1.0 request".to_owned());
    }
    match header("Content-Length").map(|n| n.parse::<usize>()) {
        Some(Ok(n)) if body.len() < n => Ok(None),
        Some(Ok(n)) => Ok(Some(body[..n].to_vec())),
        Some(Err(_)) => Err("the server sent a malformed Content-Length".to_owned()),
        None => Ok(Some(body.to_vec())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_host_port_and_target() {
        let (a, t) = split("http://127.0.0.1:6061/debug/pprof/lock?seconds=5").unwrap();
        assert_eq!((a, t), ("127.0.0.1:6061", "/debug/pprof/lock?seconds=5"));
        assert_eq!(host_port(a).unwrap(), ("127.0.0.1", 6061));
        assert_eq!(host_port("[::1]:8080").unwrap(), ("::1", 8080));
        assert_eq!(host_port("localhost").unwrap(), ("localhost", 80));
        assert_eq!(split("http://h?x=1").unwrap(), ("h", "?x=1"));
        assert_eq!(split("http://h").unwrap(), ("h", "/"));
        assert!(split("https://h/")
            .unwrap_err()
            .starts_with("https is not supported"));
        assert!(host_port("h:http").is_err());
        assert_eq!(
            run_name("http://127.0.0.1:6061/debug/pprof/lock"),
            "127.0.0.1:6061"
        );
    }

    #[test]
    fn answers_give_their_body_or_the_servers_reason() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcdef";
        assert_eq!(body(ok), Ok(Some(b"abc".to_vec())));
        assert_eq!(body(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc"), Ok(None));
        assert_eq!(
            body(b"HTTP/1.0 200 OK\r\n\r\nall of it"),
            Ok(Some(b"all of it".to_vec()))
        );
        assert_eq!(body(b"HTTP/1.1 200 OK\r\nContent-"), Ok(None));
        assert_eq!(
            body(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 12\r\n\r\nseconds=abc\n"),
            Err("the server answered 400 Bad Request: seconds=abc".to_owned())
        );
        assert_eq!(
            body(b"HTTP/1.1 404 Not Found\r\n\r\n"),
            Err("the server answered 404 Not Found".to_owned())
        );
    }
}
