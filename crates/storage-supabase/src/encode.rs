//! Percent-encoding of URL path segments, and its inverse, through the `percent-encoding`
//! crate (the one the `url` crate uses).
//!
//! One rule everywhere: every byte outside the RFC 3986 "unreserved" set
//! (`A-Z a-z 0-9 - . _ ~`) is encoded, which makes `/`, `?`, `#`, `%`, spaces and non-ASCII
//! characters safe inside a segment. Decoding is strict where the crate is lenient: a `%`
//! not followed by two hex digits is refused instead of kept as it is, because an audio URL
//! with a broken escape is not one Storage issued.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Everything but the RFC 3986 unreserved characters.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Encodes one path segment: every byte outside the unreserved set becomes `%XX`.
pub(crate) fn encode_segment(segment: &str) -> String {
    utf8_percent_encode(segment, SEGMENT).to_string()
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
    let mut escapes = input.split('%').skip(1);
    let well_formed = escapes.all(|after| {
        after
            .as_bytes()
            .get(..2)
            .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    });
    if !well_formed {
        return None;
    }
    percent_decode_str(input)
        .decode_utf8()
        .ok()
        .map(|decoded| decoded.into_owned())
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
        assert_eq!(decode("%%41"), None);
        assert_eq!(decode("%FF"), None, "not UTF-8");
    }
}
