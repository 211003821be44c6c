//! The `multipart/form-data` body of a file push. (Pulls are parsed with `multer`.)

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// One part of a form.
pub(crate) struct Part<'a> {
    pub name: &'a str,
    pub filename: Option<&'a str>,
    pub content_type: &'a str,
    pub body: &'a [u8],
}

/// Encodes `parts`; returns the `Content-Type` header value and the body.
pub(crate) fn encode(parts: &[Part<'_>]) -> Result<(String, Vec<u8>)> {
    let boundary = loop {
        let candidate = new_boundary();
        // A boundary must not occur inside any part; with 128 random bits it never will in
        // practice, but checking is cheap and makes the encoding correct by construction.
        if !parts.iter().any(|p| contains(p.body, candidate.as_bytes())) {
            break candidate;
        }
    };
    let mut body = Vec::with_capacity(parts.iter().map(|p| p.body.len() + 200).sum());
    for part in parts {
        body.extend_from_slice(b"--");
        body.extend_from_slice(boundary.as_bytes());
        body.extend_from_slice(b"\r\nContent-Disposition: form-data; name=\"");
        body.extend_from_slice(quote(part.name)?.as_bytes());
        body.push(b'"');
        if let Some(filename) = part.filename {
            body.extend_from_slice(b"; filename=\"");
            body.extend_from_slice(quote(filename)?.as_bytes());
            body.push(b'"');
        }
        body.extend_from_slice(b"\r\nContent-Type: ");
        body.extend_from_slice(part.content_type.as_bytes());
        body.extend_from_slice(b"\r\n\r\n");
        body.extend_from_slice(part.body);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"--");
    body.extend_from_slice(boundary.as_bytes());
    body.extend_from_slice(b"--\r\n");
    Ok((format!("multipart/form-data; boundary={boundary}"), body))
}

/// Escapes a header parameter the way Go's `mime/multipart` does (Pebble parses with Go).
fn quote(value: &str) -> Result<String> {
    if value.contains(['\r', '\n', '\0']) {
        return Err(Error::InvalidArgument(format!(
            "{value:?} cannot be sent in a multipart header (contains a control character)"
        )));
    }
    Ok(value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// 32 hex digits of randomness plus a counter; Pebble insists on at least 32 characters.
fn new_boundary() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // RandomState is seeded from the OS per process and varied per instance: enough
    // unpredictability for a boundary without pulling in an RNG crate.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let a = h.finish();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    let b = h.finish();
    format!("pebble-client-{a:016x}{b:016x}")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_parts_with_quoted_filename() {
        let (ct, body) = encode(&[
            Part {
                name: "request",
                filename: None,
                content_type: "application/json",
                body: b"{}",
            },
            Part {
                name: "files",
                filename: Some("/tmp/a \"b\"\\c"),
                content_type: "application/octet-stream",
                body: b"\x00\x01data",
            },
        ])
        .unwrap();
        let boundary = ct.strip_prefix("multipart/form-data; boundary=").unwrap();
        assert!(boundary.len() >= 32, "{boundary}");
        let text = String::from_utf8_lossy(&body);
        assert!(text.starts_with(&format!("--{boundary}\r\n")), "{text}");
        assert!(text.contains("name=\"request\"\r\nContent-Type: application/json\r\n\r\n{}\r\n"));
        assert!(text.contains(r#"filename="/tmp/a \"b\"\\c""#), "{text}");
        assert!(text.ends_with(&format!("\r\n--{boundary}--\r\n")), "{text}");
    }

    #[test]
    fn boundaries_differ() {
        assert_ne!(new_boundary(), new_boundary());
    }

    #[test]
    fn rejects_newlines_in_filenames() {
        let err = encode(&[Part {
            name: "files",
            filename: Some("/tmp/a\nb"),
            content_type: "application/octet-stream",
            body: b"",
        }])
        .unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Invalid);
    }
}
