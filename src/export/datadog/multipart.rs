//! A `multipart/form-data` body, laid out as ddtrace 4.16 lays out its
//! uploads: the `event` part first with its content type, then each
//! attachment under its own name and filename.

use super::event::random_u64;

/// One part of the form.
pub(crate) struct Part<'a> {
    pub(crate) name: &'a str,
    pub(crate) filename: &'a str,
    pub(crate) content_type: Option<&'a str>,
    pub(crate) body: &'a [u8],
}

/// A fresh boundary: four groups of 16 hex digits, as ddtrace's.
pub(crate) fn boundary() -> String {
    (0..4)
        .map(|_| format!("{:016x}", random_u64()))
        .collect::<Vec<_>>()
        .join("-")
}

/// The body; its `Content-Type` is `multipart/form-data; boundary=<boundary>`.
pub(crate) fn body(boundary: &str, parts: &[Part<'_>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.body.len() + 200).sum::<usize>() + 64);
    for part in parts {
        out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        out.extend_from_slice(
            format!(
                "Content-Disposition: form-data; name=\"{}\"; filename=\"{}\"\r\n",
                part.name, part.filename
            )
            .as_bytes(),
        );
        if let Some(ct) = part.content_type {
            out.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(part.body);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_delimited_and_named() {
        let b = body(
            "B",
            &[
                Part {
                    name: "event",
                    filename: "event.json",
                    content_type: Some("application/json"),
                    body: b"{}",
                },
                Part {
                    name: "lock.pprof",
                    filename: "lock.pprof",
                    content_type: None,
                    body: b"\x1f\x8b",
                },
            ],
        );
        let expected = "--B\r\nContent-Disposition: form-data; name=\"event\"; filename=\"event.json\"\r\n\
             Content-Type: application/json\r\n\r\n{}\r\n\
             --B\r\nContent-Disposition: form-data; name=\"lock.pprof\"; filename=\"lock.pprof\"\r\n\r\n";
        assert!(b.starts_with(expected.as_bytes()));
        assert!(b.ends_with(b"\x1f\x8b\r\n--B--\r\n"));
        assert_eq!(boundary().len(), 16 * 4 + 3);
    }
}
