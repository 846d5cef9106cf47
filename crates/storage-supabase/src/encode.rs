//! Percent-encoding of URL path segments, and its inverse.
//!
//! Kept in-house (a few lines) so that exactly one rule is used everywhere: every byte
//! outside the RFC 3986 "unreserved" set (`A-Z a-z 0-9 - . _ ~`) is encoded, which makes
//! `/`, `?`, `#`, `%`, spaces and non-ASCII characters safe inside a segment.

use std::fmt::Write as _;

/// Whether `byte` may appear unencoded in a path segment.
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// Encodes one path segment: every byte outside the unreserved set becomes `%XX`.
pub(crate) fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for &byte in segment.as_bytes() {
        if is_unreserved(byte) {
            out.push(char::from(byte));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// Encodes an object path segment by segment, keeping the `/` separators.
pub(crate) fn encode_path(path: &str) -> String {
    path.split('/')
        .map(encode_segment)
        .collect::<Vec<_>>()
        .join("/")
}

/// Decodes `%XX` escapes. `None` when an escape is malformed or the result is not UTF-8.
pub(crate) fn decode(input: &str) -> Option<String> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = bytes.get(i + 1).and_then(|b| char::from(*b).to_digit(16))?;
            let lo = bytes.get(i + 2).and_then(|b| char::from(*b).to_digit(16))?;
            // Two hex digits always fit in a byte.
            out.push(u8::try_from(hi * 16 + lo).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_segment_escapes_everything_outside_the_unreserved_set() {
        assert_eq!(encode_segment("a b#c?d/e%f"), "a%20b%23c%3Fd%2Fe%25f");
        assert_eq!(encode_segment("Az09-._~"), "Az09-._~");
        assert_eq!(encode_segment("é"), "%C3%A9");
    }

    #[test]
    fn encode_path_keeps_separators() {
        assert_eq!(encode_path("user 1/a#b.webm"), "user%201/a%23b.webm");
    }

    #[test]
    fn decode_inverts_encode_and_rejects_malformed_escapes() {
        let raw = "dir/ünï cødé #?%.webm";
        assert_eq!(decode(&encode_segment(raw)).as_deref(), Some(raw));
        assert_eq!(decode("a%2fb").as_deref(), Some("a/b"));
        assert_eq!(decode("100%"), None);
        assert_eq!(decode("%4"), None);
        assert_eq!(decode("%zz"), None);
        assert_eq!(decode("%FF"), None, "not UTF-8");
    }
}
