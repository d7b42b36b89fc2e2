//! The endpoint's HTTP: what a request head asks for, and the bytes of each
//! response. No I/O here.

use std::time::Duration;

use super::settings::MAX_WINDOW_SECONDS;

/// The one path served.
pub(crate) const PATH: &str = "/debug/pprof/lock";
/// The longest request head read.
pub(crate) const MAX_HEAD: usize = 8192;
/// Headers a request may have.
const MAX_HEADERS: usize = 64;

/// What a request head says, once it is whole.
#[derive(Debug, PartialEq)]
pub(crate) enum Parsed {
    /// More bytes are needed.
    Partial,
    /// A profile: of the next `Some(duration)`, or since the start (`None`).
    Profile(Option<Duration>),
    /// Refused, with the response to send.
    Refused(Refusal),
}

/// A request refused: its status and a one-line explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) status: u16,
    pub(crate) message: String,
}

impl Refusal {
    pub(crate) fn new(status: u16, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            message: message.into(),
        }
    }

    /// The response: the message as a line of text. `X-Go-Pprof` makes
    /// `go tool pprof` print it.
    pub(crate) fn response(&self) -> Vec<u8> {
        let allow = if self.status == 405 { "Allow: GET\r\n" } else { "" };
        let body = format!("{}\n", self.message.replace(['\r', '\n'], " "));
        response(
            self.status,
            &format!("Content-Type: text/plain; charset=utf-8\r\nX-Go-Pprof: 1\r\n{allow}"),
            body.as_bytes(),
        )
    }
}

/// The response carrying a gzip'd pprof, as Go's `net/http/pprof` sends one.
pub(crate) fn profile_response(gzipped_pprof: &[u8]) -> Vec<u8> {
    response(
        200,
        "Content-Type: application/octet-stream\r\n\
         Content-Disposition: attachment; filename=\"lock.pprof\"\r\n\
         X-Content-Type-Options: nosniff\r\n",
        gzipped_pprof,
    )
}

fn response(status: u16, headers: &str, body: &[u8]) -> Vec<u8> {
    let head = format!(
        "HTTP/1.1 {status} {}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        reason(status),
        body.len()
    );
    let mut out = Vec::with_capacity(head.len() + body.len());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(body);
    out
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// Reads what the request head in `buf` asks for.
pub(crate) fn parse(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(buf) {
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => Parsed::Refused(too_long()),
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Ok(httparse::Status::Complete(_)) => {
            let method = request.method.unwrap_or("");
            if method != "GET" {
                return Parsed::Refused(Refusal::new(
                    405,
                    format!("method {method} is not allowed: use GET"),
                ));
            }
            route(request.path.unwrap_or(""))
        }
        Err(httparse::Error::TooManyHeaders) => Parsed::Refused(too_long()),
        Err(e) => Parsed::Refused(Refusal::new(400, format!("malformed HTTP request: {e}"))),
    }
}

fn too_long() -> Refusal {
    Refusal::new(
        431,
        format!("request head over {MAX_HEAD} bytes or {MAX_HEADERS} headers"),
    )
}

/// The profile a request target asks for.
fn route(target: &str) -> Parsed {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if path != PATH {
        return Parsed::Refused(Refusal::new(
            404,
            format!(
                "nothing at {path}: the lock profile is at {PATH} (since the start), \
                 or {PATH}?seconds=N (the next N seconds)"
            ),
        ));
    }
    let mut window = None;
    // Other parameters are left alone, as Go's handlers do.
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != "seconds" {
            continue;
        }
        match value.parse::<u64>() {
            Ok(s) if (1..=MAX_WINDOW_SECONDS).contains(&s) => window = Some(Duration::from_secs(s)),
            _ => {
                return Parsed::Refused(Refusal::new(
                    400,
                    format!(
                        "seconds={value:?} is not valid: expected a whole number of seconds from 1 to {MAX_WINDOW_SECONDS}"
                    ),
                ))
            }
        }
    }
    Parsed::Profile(window)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(target: &str) -> Parsed {
        parse(format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
    }

    fn refused(p: Parsed) -> (u16, String) {
        match p {
            Parsed::Refused(r) => (r.status, r.message),
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn the_lock_profile_with_and_without_seconds() {
        assert_eq!(get(PATH), Parsed::Profile(None));
        assert_eq!(
            get("/debug/pprof/lock?seconds=5"),
            Parsed::Profile(Some(Duration::from_secs(5)))
        );
        assert_eq!(
            get("/debug/pprof/lock?debug=0&seconds=3600"),
            Parsed::Profile(Some(Duration::from_secs(3600)))
        );
        assert_eq!(parse(b"GET /debug/pprof/lock HTTP/1.1\r\nHo"), Parsed::Partial);
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        let (status, message) = refused(get("/debug/pprof/mutex"));
        assert_eq!(status, 404);
        assert!(message.contains("nothing at /debug/pprof/mutex"), "{message}");
        for bad in ["abc", "0", "-1", "1000000000", "1.5", ""] {
            let (status, message) = refused(get(&format!("{PATH}?seconds={bad}")));
            assert_eq!(status, 400);
            assert_eq!(
                message,
                format!("seconds={bad:?} is not valid: expected a whole number of seconds from 1 to 3600")
            );
        }
        let (status, message) = refused(parse(b"POST /debug/pprof/lock HTTP/1.1\r\n\r\n"));
        assert_eq!(
            (status, message.as_str()),
            (405, "method POST is not allowed: use GET")
        );
        assert_eq!(refused(parse(b"\x16\x03\x01 hello\r\n\r\n")).0, 400);
        assert_eq!(refused(parse(b"GET /a\x01b HTTP/1.1\r\n\r\n")).0, 400);
        assert_eq!(refused(parse(&[b'a'; MAX_HEAD])).0, 431);
        let mut long = b"GET / HTTP/1.1\r\nX: ".to_vec();
        long.resize(MAX_HEAD, b'a');
        assert_eq!(refused(parse(&long)).0, 431);
    }

    #[test]
    fn responses_are_whole_http_messages() {
        let r = Refusal::new(405, "method PUT is not allowed: use GET\nreally").response();
        let text = String::from_utf8(r).unwrap();
        assert!(text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{text}");
        assert!(text.contains("Allow: GET\r\n"));
        assert!(
            text.ends_with("\r\n\r\nmethod PUT is not allowed: use GET really\n"),
            "{text}"
        );
        let ok = profile_response(b"\x1f\x8b");
        assert!(ok.starts_with(b"HTTP/1.1 200 OK\r\n"));
        assert!(ok.ends_with(b"Content-Length: 2\r\nConnection: close\r\n\r\n\x1f\x8b"));
    }
}
