//! Parsing `transcriptions.audio_file_path` into a bucket and an object name.
//!
//! Two forms are accepted (contract §4):
//!
//! - `<bucket>/<object path>`, taken literally (no percent-decoding);
//! - a Storage URL of **this** project:
//!   `https://<host>/storage/v1/object/[public/|sign/|authenticated/]<bucket>/<object path>[?query]`.
//!   The path is percent-decoded, so the object name is the decoded path. A query is
//!   accepted only when it is one Storage itself issues — a signed URL's `token`, `download`,
//!   and the image transform parameters `width`, `height`, `resize`, `quality`, `format` —
//!   and is then dropped, as is any fragment. Anything else after a `?` is refused
//!   ([`PathError::UnexpectedQuery`]): clients build public URLs with `encodeURI`, which
//!   leaves a `?` inside an object name unescaped, so `…/audio/qm/what?1.webm` names the
//!   object `qm/what?1.webm`, not `qm/what`, and guessing would delete the wrong file.
//!
//! Everything else is refused with a [`PathError`] saying why, because the result is used
//! to delete objects: a value that could name a different object than intended (a `..`
//! segment, a backslash, a control character, another project's URL, an API route such as
//! `/object/list/…`) is never guessed at.
//!
//! Bucket names must be 1 to 100 characters of `A-Z a-z 0-9 _ . -` and neither `.` nor
//! `..`. This is stricter than Storage itself, which also allows a few punctuation marks
//! and spaces; buckets made by the product follow it. Object names must be at most 1024
//! bytes with no empty, `.` or `..` segment, and only of the characters Storage allows in
//! names ([`is_storage_name_char`]): a stored name with `%` or `ü` names no object that can
//! exist, so Storage's "not found" for it would say nothing about the real audio. A path
//! with white space around it is refused too, and a `token` only belongs to a `/sign/` URL.
//!
//! [`plausible_objects`] reads a path the other way, for keeping files rather than deleting
//! them: every object it could mean, even when [`parse_audio_path`] refuses it.

use std::fmt;

use url::Url;

use crate::encode::decode;

/// Longest object name accepted, in bytes (Storage's own key limit).
pub const MAX_OBJECT_NAME_BYTES: usize = 1024;
/// Longest bucket name accepted, in characters.
pub const MAX_BUCKET_NAME_CHARS: usize = 100;

/// The optional access segment after `/object/` in a Storage URL.
const ACCESS_MODES: [&str; 3] = ["public", "sign", "authenticated"];
/// Query parameters Storage puts in the URLs it issues (signed URLs, downloads, image
/// transforms). Any other query is read as part of an unescaped object name.
const STORAGE_QUERY_KEYS: [&str; 7] = [
    "token", "download", "width", "height", "resize", "quality", "format",
];
/// Image transform parameters: Storage puts them on `/render/image/` URLs only.
const TRANSFORM_KEYS: [&str; 5] = ["width", "height", "resize", "quality", "format"];
/// Route words after `/object/` that are API calls, not object locations.
const RESERVED_ROUTES: [&str; 6] = ["info", "list", "list-v2", "upload", "move", "copy"];

/// An object in Storage: a bucket and the object's full name within it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    /// The bucket id.
    pub bucket: String,
    /// The object name, `/` between folders, not percent-encoded.
    pub name: String,
}

impl ObjectRef {
    /// Builds a reference after checking both parts by the rules of this module.
    pub fn new(bucket: impl Into<String>, name: impl Into<String>) -> Result<Self, PathError> {
        let (bucket, name) = (bucket.into(), name.into());
        check_no_forbidden_chars(&bucket)?;
        check_no_forbidden_chars(&name)?;
        validate_bucket_name(&bucket)?;
        check_object_name(&name)?;
        Ok(ObjectRef { bucket, name })
    }
}

impl fmt::Display for ObjectRef {
    /// Renders the plain `<bucket>/<object path>` form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.bucket, self.name)
    }
}

/// Why an audio path was refused. Messages never repeat the whole input (a signed URL
/// carries a token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// Empty or whitespace only.
    #[error("the audio path is empty")]
    Empty,
    /// `/bucket/name`: the plain form has no leading `/`.
    #[error("the audio path starts with '/'; expected `<bucket>/<object path>`")]
    LeadingSlash,
    /// Only a bucket (`bucket` or `bucket/`), no object.
    #[error("the audio path names a bucket but no object")]
    MissingObject,
    /// `a//b` or a trailing `/` after the object name.
    #[error("the object name has an empty segment ('//' or a trailing '/')")]
    EmptySegment,
    /// A `.` or `..` segment, possibly percent-encoded.
    #[error("the audio path has a '.' or '..' segment")]
    DotSegment,
    /// A `\`, possibly percent-encoded.
    #[error("the audio path contains a backslash")]
    Backslash,
    /// A control character, possibly percent-encoded.
    #[error("the audio path contains a control character")]
    ControlCharacter,
    /// A malformed `%` escape, or escapes that do not decode to UTF-8.
    #[error("the audio URL has invalid percent-encoding")]
    InvalidPercentEncoding,
    /// The object name is longer than [`MAX_OBJECT_NAME_BYTES`].
    #[error("the object name is {len} bytes; at most {MAX_OBJECT_NAME_BYTES} are allowed")]
    NameTooLong {
        /// The name's length in bytes.
        len: usize,
    },
    /// The bucket name breaks the rule in the module docs.
    #[error("invalid bucket name {bucket:?}: {reason}")]
    InvalidBucket {
        /// The offending name (cut to 100 characters).
        bucket: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Looks like a URL but its scheme or host cannot be read.
    #[error("the audio path is not a valid http(s) URL")]
    InvalidUrl,
    /// A URL of another project or server (scheme, host or port differ).
    #[error("the audio URL points at {found}, not this project ({expected})")]
    ForeignOrigin {
        /// The URL's origin.
        found: String,
        /// The project's origin.
        expected: String,
    },
    /// A URL whose query is not one Storage issues: most likely an object name with an
    /// unescaped `?` (as `encodeURI` leaves it), so the object cannot be told for sure.
    #[error("the audio URL has a query Storage does not issue ({detail}); an unescaped '?' in the object name?")]
    UnexpectedQuery {
        /// Which part of the query is unknown (cut short).
        detail: String,
    },
    /// A character Storage never allows in an object name (`%`, `#`, non-ASCII, …): no
    /// object can have this name, so the path was most likely encoded twice or is wrong,
    /// and Storage's "not found" for it would prove nothing about the real audio.
    #[error("the object name contains {character:?}, which Storage does not allow in names (encoded twice?)")]
    NotAStorageName {
        /// The first such character.
        character: char,
    },
    /// Spaces or other white space before or after the path.
    #[error("the audio path has white space before or after it")]
    SurroundingWhitespace,
    /// A URL of this project that does not name a Storage object.
    #[error("the audio URL is not a Storage object URL (expected a path under {expected_prefix})")]
    NotStorageObjectUrl {
        /// The path prefix object URLs have.
        expected_prefix: String,
    },
}

/// Parses an `audio_file_path` value into the object it names. `project_url` is the
/// project's URL (`SUPABASE_URL`); Storage URLs of any other origin are refused.
///
/// ```
/// use storage_supabase::path::parse_audio_path;
/// let project = url::Url::parse("https://abc.supabase.co").unwrap();
/// let plain = parse_audio_path("audio/user 1/a.webm", &project).unwrap();
/// let url = parse_audio_path(
///     "https://abc.supabase.co/storage/v1/object/sign/audio/user%201/a.webm?token=eyJ0.eX0.c2ln",
///     &project,
/// )
/// .unwrap();
/// assert_eq!(plain, url);
/// assert_eq!((url.bucket.as_str(), url.name.as_str()), ("audio", "user 1/a.webm"));
/// ```
pub fn parse_audio_path(raw: &str, project_url: &Url) -> Result<ObjectRef, PathError> {
    if raw.trim().is_empty() {
        return Err(PathError::Empty);
    }
    if raw.trim() != raw {
        return Err(PathError::SurroundingWhitespace);
    }
    check_no_forbidden_chars(raw)?;
    match split_scheme(raw) {
        Some((scheme, rest)) => parse_url(scheme, rest, project_url),
        None => parse_plain(raw),
    }
}

/// Every object a stored path could plausibly name, valid or not: for keeping the objects
/// that newer rows still point at, never for choosing what to delete. A path
/// [`parse_audio_path`] refuses still protects what it might mean, and one it accepts
/// also protects the readings it chose against: the name with its query kept (an
/// unescaped `?`), decoded once more (encoded twice), trimmed. Any host is read, since
/// the same files may be reached through another name of the project.
pub fn plausible_objects(raw: &str) -> Vec<ObjectRef> {
    // As a browser or `fetch` reads a URL: a backslash is a slash, and tabs and line
    // breaks anywhere are dropped.
    let cleaned: String = raw
        .trim()
        .chars()
        .filter(|c| !matches!(c, '\t' | '\r' | '\n'))
        .map(|c| if c == '\\' { '/' } else { c })
        .collect();
    let mut objects = plausible_objects_of(raw.trim());
    if cleaned != raw.trim() {
        objects.extend(plausible_objects_of(&cleaned));
        objects.sort();
        objects.dedup();
    }
    objects
}

fn plausible_objects_of(trimmed: &str) -> Vec<ObjectRef> {
    // Where the object's location starts: after a URL's host (also one without a scheme,
    // `//host/…`, which a browser reads against the page's), and after Storage's route
    // when the path has one (also a path without a host, `/storage/v1/object/…`, which a
    // browser reads against the page's host). A path without a host also stands as it is.
    let mut locations: Vec<&str> = Vec::new();
    let host_path = match split_scheme(trimmed) {
        Some((_, rest)) => Some(rest.find('/').map_or("", |start| &rest[start..])),
        None => trimmed
            .strip_prefix("//")
            .map(|rest| rest.find('/').map_or("", |start| &rest[start..])),
    };
    match host_path {
        Some(path) => locations.push(after_route(path).unwrap_or(path.trim_start_matches('/'))),
        None => {
            locations.push(trimmed);
            if let Some(located) = after_route(trimmed) {
                locations.push(located);
            }
        }
    }
    let mut objects: Vec<ObjectRef> = locations.into_iter().flat_map(objects_at).collect();
    objects.sort();
    objects.dedup();
    objects
}

/// The object's location in `path` after Storage's route (`/object/`, `/render/image/`,
/// then a signed upload's or an info route's prefix and the access mode); `None` when
/// the path has no such route.
fn after_route(path: &str) -> Option<&str> {
    let mut after_route = ["/object/", "/render/image/"]
        .iter()
        .filter_map(|route| path.find(route).map(|at| &path[at + route.len()..]))
        .next()?;
    // Routes about an object name it too: a signed upload URL, its info.
    for route in ["upload/sign/", "info/"] {
        if let Some(rest) = after_route.strip_prefix(route) {
            after_route = rest;
        }
    }
    let (first, rest) = after_route.split_once('/').unwrap_or((after_route, ""));
    Some(if ACCESS_MODES.contains(&first) {
        rest
    } else {
        after_route
    })
}

/// Every object a location (`bucket/name`, maybe with a query, a fragment, encodings)
/// could mean.
fn objects_at(located: &str) -> Vec<ObjectRef> {
    let without_fragment = &located[..located.find('#').unwrap_or(located.len())];
    let mut readings = vec![without_fragment.to_owned()];
    if let Some(at) = without_fragment.find('?') {
        readings.push(without_fragment[..at].to_owned());
    }
    // Decoded once and twice; only text with a '%' can change (the common plain path
    // costs nothing more).
    let mut level: Vec<String> = readings.clone();
    for _ in 0..2 {
        level = level
            .iter()
            .filter(|r| r.contains('%'))
            .filter_map(|r| decode(r))
            .collect();
        // What decoding reveals is read as the raw text is: a backslash as a slash, a
        // fragment cut off.
        let revealed: Vec<String> = level
            .iter()
            .flat_map(|r| {
                let slashed = r.contains('\\').then(|| r.replace('\\', "/"));
                let cut = r.find('#').map(|at| r[..at].to_owned());
                slashed.into_iter().chain(cut)
            })
            .collect();
        readings.extend(level.iter().cloned());
        readings.extend(revealed);
    }
    // As a browser or an HTTP client resolves `.` and `..` (and Storage's clients drop
    // empty segments), a newer row's `s/x/../p.webm` serves `s/p.webm`.
    let resolved: Vec<String> = readings
        .iter()
        .filter_map(|reading| resolve_segments(reading))
        .collect();
    readings.extend(resolved);
    let mut objects: Vec<ObjectRef> = readings
        .iter()
        .filter_map(|reading| {
            let (bucket, name) = reading.trim().split_once('/')?;
            (!bucket.is_empty() && !name.is_empty()).then(|| ObjectRef {
                bucket: bucket.to_owned(),
                name: name.trim().to_owned(),
            })
        })
        .collect();
    objects.sort();
    objects.dedup();
    objects
}

/// `path` with its empty and `.` segments dropped and each `..` taking the segment before
/// it (at the root, a `..` is dropped, as a browser does); `None` when nothing changes.
fn resolve_segments(path: &str) -> Option<String> {
    let mut kept: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                kept.pop();
            }
            other => kept.push(other),
        }
    }
    let resolved = kept.join("/");
    (resolved != path).then_some(resolved)
}

/// Whether `raw` is a URL whose query could also be the end of an object name: the object
/// it names is the path before the `?` only if the query is Storage's own, which
/// [`parse_audio_path`] checks by its form but cannot prove (`download=x.webm` may also
/// end a name with an unescaped `?`). A caller should not take the absence of that object
/// as proof that the audio is gone. A signed URL's query alone (`token=<JWT>`) is not
/// taken for part of a name.
pub fn has_query(raw: &str) -> bool {
    let Some((_, rest)) = split_scheme(raw.trim()) else {
        return false;
    };
    let Some((_, query)) = rest.split_once('?') else {
        return false;
    };
    let query = &query[..query.find('#').unwrap_or(query.len())];
    !query
        .split('&')
        .all(|pair| pair.split_once('=').is_some_and(|(key, _)| key == "token"))
}

/// Checks a bucket name: 1 to [`MAX_BUCKET_NAME_CHARS`] characters of
/// `A-Z a-z 0-9 _ . -`, and neither `.` nor `..`.
pub fn validate_bucket_name(bucket: &str) -> Result<(), PathError> {
    let invalid = |reason| {
        Err(PathError::InvalidBucket {
            bucket: bucket.chars().take(MAX_BUCKET_NAME_CHARS).collect(),
            reason,
        })
    };
    if bucket.is_empty() {
        return invalid("empty");
    }
    if bucket.chars().count() > MAX_BUCKET_NAME_CHARS {
        return invalid("longer than 100 characters");
    }
    if !bucket
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return invalid("only A-Z, a-z, 0-9, '_', '.' and '-' are allowed");
    }
    if bucket == "." || bucket == ".." {
        return invalid("'.' and '..' are not bucket names");
    }
    Ok(())
}

/// `scheme` and what follows `://`, when `raw` starts like a URL.
fn split_scheme(raw: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = raw.split_once("://")?;
    let mut chars = scheme.chars();
    let starts_with_letter = chars.next()?.is_ascii_alphabetic();
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    (starts_with_letter && rest_ok).then_some((scheme, rest))
}

fn parse_plain(raw: &str) -> Result<ObjectRef, PathError> {
    if raw.starts_with('/') {
        return Err(PathError::LeadingSlash);
    }
    let (bucket, name) = raw.split_once('/').unwrap_or((raw, ""));
    build(bucket.to_owned(), name.to_owned())
}

fn parse_url(scheme: &str, rest: &str, project_url: &Url) -> Result<ObjectRef, PathError> {
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, after) = rest.split_at(authority_end);
    let path_end = after.find(['?', '#']).unwrap_or(after.len());
    let path = &after[..path_end];
    if authority.is_empty() {
        return Err(PathError::InvalidUrl);
    }
    let query = after[path_end..]
        .strip_prefix('?')
        .map(|query| &query[..query.find('#').unwrap_or(query.len())]);
    let origin = Url::parse(&format!("{scheme}://{authority}/"))
        .map_err(|_| PathError::InvalidUrl)?
        .origin();
    let expected = project_url.origin();
    if origin != expected {
        let found = if origin.is_tuple() {
            origin.ascii_serialization()
        } else {
            // Opaque origins serialise as "null"; show scheme and host (no user info).
            let host = authority.rsplit('@').next().unwrap_or(authority);
            format!("{scheme}://{host}")
        };
        return Err(PathError::ForeignOrigin {
            found,
            expected: expected.ascii_serialization(),
        });
    }

    let base = project_url.path().trim_end_matches('/');
    let prefix = format!("{base}/storage/v1/object/");
    let not_object_url = || PathError::NotStorageObjectUrl {
        expected_prefix: prefix.clone(),
    };
    // An image transform of the object (`/render/image/public|sign|authenticated/…`):
    // the only URLs Storage puts transform parameters on.
    let render_prefix = format!("{base}/storage/v1/render/image/");
    let (rest, render) = match path.strip_prefix(render_prefix.as_str()) {
        Some(rest) => (rest, true),
        None => (
            path.strip_prefix(prefix.as_str())
                .ok_or_else(not_object_url)?,
            false,
        ),
    };

    let (first, after_first) = rest.split_once('/').unwrap_or((rest, ""));
    let first = decode_component(first)?;
    if let Some(query) = query {
        check_query(query, first == "sign", render)?;
    }
    let rest = if ACCESS_MODES.contains(&first.as_str()) {
        after_first
    } else if render || RESERVED_ROUTES.contains(&first.as_str()) {
        return Err(not_object_url());
    } else {
        rest
    };

    let (bucket, name) = rest.split_once('/').unwrap_or((rest, ""));
    build(decode_component(bucket)?, decode_component(name)?)
}

/// Accepts only a query Storage itself issues: each parameter once, with a value of the
/// form Storage gives it (a signed URL's JWT `token`, `download` with or without a file
/// name, integer `width`/`height`, `quality` 20–100, `resize` of `cover`/`contain`/`fill`,
/// `format=origin`). Anything else may be the rest of a name whose `?` was left unescaped
/// (`…/what?width=1.webm` names the object `what?width=1.webm`), so it is refused, never
/// cut off. A `token` only belongs to a signed URL; elsewhere it is part of a name.
fn check_query(query: &str, signed: bool, render: bool) -> Result<(), PathError> {
    let unexpected = |detail: String| Err(PathError::UnexpectedQuery { detail });
    if query.is_empty() {
        return unexpected("an empty query".to_owned());
    }
    let mut seen: Vec<&str> = Vec::new();
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let shown = |text: &str| text.chars().take(40).collect::<String>();
        if !STORAGE_QUERY_KEYS.contains(&key) {
            return unexpected(format!("parameter {:?}", shown(key)));
        }
        if seen.contains(&key) {
            return unexpected(format!("parameter {key:?} twice"));
        }
        seen.push(key);
        if key == "token" && !signed {
            return unexpected("a token on a URL that is not a signed URL".to_owned());
        }
        if TRANSFORM_KEYS.contains(&key) && !render {
            return unexpected(format!(
                "{key} on an object URL (Storage puts image transforms on /render/image/ \
                 URLs only)"
            ));
        }
        if !storage_issues(key, value, pair.contains('=')) {
            return unexpected(format!(
                "{key}={:?}, not a value Storage gives it",
                shown(value)
            ));
        }
    }
    Ok(())
}

/// Whether Storage issues `key` with this value (`has_value`: written with a `=`).
fn storage_issues(key: &str, value: &str, has_value: bool) -> bool {
    let digits = |max_len: usize| {
        !value.is_empty() && value.len() <= max_len && value.bytes().all(|b| b.is_ascii_digit())
    };
    match key {
        "token" => {
            let parts: Vec<&str> = value.split('.').collect();
            parts.len() == 3
                && parts.iter().all(|part| {
                    !part.is_empty()
                        && part
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
                })
        }
        // A file name to save as, or nothing; a second '?' is never Storage's.
        "download" => !value.contains('?'),
        "width" | "height" => digits(5),
        "quality" => digits(3) && value.parse::<u32>().is_ok_and(|q| (20..=100).contains(&q)),
        "resize" => matches!(value, "cover" | "contain" | "fill"),
        "format" => value == "origin",
        _ => !has_value,
    }
}

/// Percent-decodes and re-checks for characters that decoding may have produced.
fn decode_component(raw: &str) -> Result<String, PathError> {
    let decoded = decode(raw).ok_or(PathError::InvalidPercentEncoding)?;
    check_no_forbidden_chars(&decoded)?;
    Ok(decoded)
}

fn build(bucket: String, name: String) -> Result<ObjectRef, PathError> {
    validate_bucket_name(&bucket)?;
    check_object_name(&name)?;
    Ok(ObjectRef { bucket, name })
}

fn check_no_forbidden_chars(text: &str) -> Result<(), PathError> {
    if text.contains('\\') {
        return Err(PathError::Backslash);
    }
    if text.chars().any(char::is_control) {
        return Err(PathError::ControlCharacter);
    }
    Ok(())
}

/// Whether Storage allows `c` in an object name: `A-Z a-z 0-9` and
/// `` _/!.*'() &$=@;:+,?- `` (EXTERNAL_APIS.md; others get `400 InvalidKey` at upload).
pub fn is_storage_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_/!.*'() &$=@;:+,?-".contains(c)
}

fn check_object_name(name: &str) -> Result<(), PathError> {
    if name.is_empty() {
        return Err(PathError::MissingObject);
    }
    if name.len() > MAX_OBJECT_NAME_BYTES {
        return Err(PathError::NameTooLong { len: name.len() });
    }
    if let Some(character) = name.chars().find(|c| !is_storage_name_char(*c)) {
        return Err(PathError::NotAStorageName { character });
    }
    for segment in name.split('/') {
        if segment.is_empty() {
            return Err(PathError::EmptySegment);
        }
        if segment == "." || segment == ".." {
            return Err(PathError::DotSegment);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::{encode_path, encode_segment};
    use proptest::prelude::*;

    const PROJECT: &str = "https://abc.supabase.co";

    fn project() -> Url {
        Url::parse(PROJECT).unwrap()
    }

    fn parse(raw: &str) -> Result<ObjectRef, PathError> {
        parse_audio_path(raw, &project())
    }

    fn obj(bucket: &str, name: &str) -> ObjectRef {
        ObjectRef {
            bucket: bucket.into(),
            name: name.into(),
        }
    }

    #[test]
    fn plain_form_is_taken_literally() {
        assert_eq!(
            parse("audio/user1/a.webm"),
            Ok(obj("audio", "user1/a.webm"))
        );
        assert_eq!(parse("audio/a.webm"), Ok(obj("audio", "a.webm")));
        // Every character Storage allows in a name, '?' included, is part of the name.
        assert_eq!(
            parse("audio/it's (1) & $=@;:+,?!*-_.webm"),
            Ok(obj("audio", "it's (1) & $=@;:+,?!*-_.webm"))
        );
        // A character Storage refuses cannot be in a real name: not taken literally.
        for (raw, character) in [
            ("audio/100%25.webm", '%'),
            ("audio/e%20f.webm", '%'),
            ("audio/ü.webm", 'ü'),
            ("audio/a#b.webm", '#'),
            ("audio/a\"b.webm", '"'),
        ] {
            assert_eq!(
                parse(raw),
                Err(PathError::NotAStorageName { character }),
                "{raw}"
            );
        }
        // White space around a path is a writer's slip, not part of a name.
        for raw in ["audio/a.webm ", " audio/a.webm", "audio/a.webm\u{a0}"] {
            assert_eq!(parse(raw), Err(PathError::SurroundingWhitespace), "{raw:?}");
        }
        assert_eq!(parse("public/a.webm"), Ok(obj("public", "a.webm")));
    }

    #[test]
    fn every_url_form_is_accepted() {
        for mode in ["", "public/", "sign/", "authenticated/"] {
            let raw = format!("{PROJECT}/storage/v1/object/{mode}audio/user1/a.webm");
            assert_eq!(parse(&raw), Ok(obj("audio", "user1/a.webm")), "{raw}");
        }
    }

    #[test]
    fn url_query_and_fragment_are_stripped() {
        let raw = format!(
            "{PROJECT}/storage/v1/object/sign/audio/a.webm?token=eyJ0.eX0.c2ln&download#frag"
        );
        assert_eq!(parse(&raw), Ok(obj("audio", "a.webm")));
    }

    #[test]
    fn queries_storage_does_not_issue_are_refused_rather_than_cut_off() {
        for raw in [
            format!("{PROJECT}/storage/v1/object/public/audio/qm/what?1.webm"),
            format!("{PROJECT}/storage/v1/object/public/audio/a.webm?"),
            format!("{PROJECT}/storage/v1/object/public/audio/a?b=c.webm"),
            format!("{PROJECT}/storage/v1/object/sign/audio/a.webm?token=t&x=1"),
            format!("{PROJECT}/storage/v1/object/public/audio/a.webm?&"),
            format!("{PROJECT}/storage/v1/object/public/audio/a?token.webm"),
            // Only a signed URL carries a token: elsewhere it is part of a name.
            format!("{PROJECT}/storage/v1/object/public/audio/qq?token=1.webm"),
            format!("{PROJECT}/storage/v1/object/audio/qq?token=1.webm"),
            format!("{PROJECT}/storage/v1/object/authenticated/audio/a.webm?download&token=t"),
            // Known parameters with values Storage never gives them: the rest of a name
            // whose '?' was left unescaped.
            format!("{PROJECT}/storage/v1/object/public/audio/qm/what?width=1.webm"),
            format!("{PROJECT}/storage/v1/object/public/audio/b/x?format=y.webm"),
            format!("{PROJECT}/storage/v1/object/public/audio/c/x?quality=abc.webm"),
            format!("{PROJECT}/storage/v1/object/public/audio/c/x?quality=5"),
            format!("{PROJECT}/storage/v1/object/public/audio/d/x?resize=z.webm"),
            format!("{PROJECT}/storage/v1/object/public/audio/e/x?height=2&width=1.webm"),
            format!("{PROJECT}/storage/v1/object/public/audio/e/x?width=1&width=2"),
            format!("{PROJECT}/storage/v1/object/public/audio/f/x?download=a?b.webm"),
            format!("{PROJECT}/storage/v1/object/sign/audio/t/x?token=a.webm?token=eyJ0.eX0.c2ln"),
            format!("{PROJECT}/storage/v1/object/sign/audio/t/x?token=t"),
            format!("{PROJECT}/storage/v1/object/sign/audio/t/x?token=a.b.c.d"),
            format!("{PROJECT}/storage/v1/object/sign/audio/t/x?token=a..c"),
            // Transform parameters belong to render URLs: on an object URL they may be the
            // rest of a name.
            format!("{PROJECT}/storage/v1/object/public/audio/q/a.webm?width=1"),
            format!(
                "{PROJECT}/storage/v1/object/sign/audio/q/a.webm?token=eyJ0.eX0.c2ln&format=origin"
            ),
        ] {
            assert!(
                matches!(parse(&raw), Err(PathError::UnexpectedQuery { .. })),
                "{raw}: {:?}",
                parse(&raw)
            );
        }
        for query in [
            "token=eyJhbGciOi.x.y",
            "download",
            "download=a.webm",
            "token=eyJhbGciOi.x.y#frag",
            "token=eyJ0.eX0.c2ln&download=",
        ] {
            let raw = format!("{PROJECT}/storage/v1/object/sign/audio/a.webm?{query}");
            assert_eq!(parse(&raw), Ok(obj("audio", "a.webm")), "{raw}");
        }
        // Image transforms: on render URLs, which name the same object.
        for (mode, query) in [
            (
                "public",
                "width=100&height=50&resize=cover&quality=80&format=origin",
            ),
            ("public", "quality=20&width=1&height=99999"),
            ("sign", "token=eyJ0.eX0.c2ln"),
            ("authenticated", "width=10"),
        ] {
            let raw = format!("{PROJECT}/storage/v1/render/image/{mode}/audio/a.webm?{query}");
            assert_eq!(parse(&raw), Ok(obj("audio", "a.webm")), "{raw}");
        }
        // The plain form has no query: a '?' there is part of the name.
        assert_eq!(
            parse("audio/qm/what?1.webm"),
            Ok(obj("audio", "qm/what?1.webm"))
        );
        // Encoded, the same name is unambiguous.
        let raw = format!("{PROJECT}/storage/v1/object/public/audio/qm/what%3F1.webm");
        assert_eq!(parse(&raw), Ok(obj("audio", "qm/what?1.webm")));
    }

    #[test]
    fn a_query_that_could_end_a_name_is_told_from_a_signed_urls_token() {
        let url = |tail: &str| format!("{PROJECT}/storage/v1/object/sign/audio/a.webm?{tail}");
        assert!(!has_query(&url("token=eyJ0.eX0.c2ln")));
        assert!(!has_query(&url("token=eyJ0.eX0.c2ln#frag")));
        assert!(has_query(&url("token=eyJ0.eX0.c2ln&download=a.webm")));
        assert!(has_query(&url("download")));
        assert!(!has_query("audio/a.webm?download=x.webm"));
        assert!(!has_query(&format!(
            "{PROJECT}/storage/v1/object/public/audio/a.webm"
        )));
    }

    #[test]
    fn a_path_protects_every_object_it_could_mean_even_when_refused() {
        let cases = [
            // Dot segments and doubled or leading slashes: the object a client reaches.
            (
                format!("{PROJECT}/storage/v1/object/public/audio/s/x/../p.webm"),
                vec!["s/p.webm", "s/x/../p.webm"],
            ),
            (
                format!("{PROJECT}/storage/v1/object/public/audio/s/x/%2e%2e/e.webm"),
                vec!["s/e.webm", "s/x/%2e%2e/e.webm", "s/x/../e.webm"],
            ),
            (
                format!("{PROJECT}/storage/v1/object/public/audio/s/./o.webm"),
                vec!["s/./o.webm", "s/o.webm"],
            ),
            (
                format!("{PROJECT}/storage/v1/object/public/audio/zz/../s/q.webm?width=5"),
                vec![
                    "s/q.webm",
                    "s/q.webm?width=5",
                    "zz/../s/q.webm",
                    "zz/../s/q.webm?width=5",
                ],
            ),
            (
                "audio/s/x/../p.webm".to_owned(),
                vec!["s/p.webm", "s/x/../p.webm"],
            ),
            ("/audio/s/i.webm".to_owned(), vec!["s/i.webm"]),
            ("audio/s//k.webm".to_owned(), vec!["s//k.webm", "s/k.webm"]),
            // A backslash is a slash to a browser; tabs and line breaks are dropped.
            (
                format!("{PROJECT}/storage/v1/object/public/audio/p\\x.webm"),
                vec!["p/x.webm"],
            ),
            ("audio/p\\x.webm".to_owned(), vec!["p/x.webm"]),
            (
                format!("{PROJECT}/storage/v1/object/public/audio/p/z\\..\\y.webm"),
                vec!["p/y.webm"],
            ),
            (
                format!("{PROJECT}/storage/v1/object/public/audio/p/x.we\tbm"),
                vec!["p/x.webm"],
            ),
            (
                format!("{PROJECT}/storage/v1/object/public/au\rdio/p/x2.webm"),
                vec!["p/x2.webm"],
            ),
            ("audio/p/x3.we\tbm".to_owned(), vec!["p/x3.webm"]),
            // A signed upload URL and an info URL name their object.
            (
                format!("{PROJECT}/storage/v1/object/upload/sign/audio/p/up.webm?token=a.b.c"),
                vec!["p/up.webm"],
            ),
            (
                format!("{PROJECT}/storage/v1/object/info/public/audio/p/info.webm"),
                vec!["p/info.webm"],
            ),
            // A query that is no Storage query: the name with it and without it.
            (
                format!("{PROJECT}/storage/v1/object/public/audio/u1/x.webm?v=2"),
                vec!["u1/x.webm", "u1/x.webm?v=2"],
            ),
            (
                format!("{PROJECT}/storage/v1/object/public/audio/u1/what?1.webm"),
                vec!["u1/what", "u1/what?1.webm"],
            ),
            (
                format!("{PROJECT}/storage/v1/object/public/audio/u1/z5.webm?"),
                vec!["u1/z5.webm"],
            ),
            // Image transforms, another host, white space, encodings.
            (
                format!("{PROJECT}/storage/v1/render/image/public/audio/u1/z6.webm?width=10"),
                vec!["u1/z6.webm"],
            ),
            (
                "http://localhost:18451/storage/v1/object/public/audio/u1/host.webm".to_owned(),
                vec!["u1/host.webm"],
            ),
            (" audio/u1/t.webm".to_owned(), vec!["u1/t.webm"]),
            ("audio/u1/v.webm ".to_owned(), vec!["u1/v.webm"]),
            (
                "audio/u1/e%20f.webm".to_owned(),
                vec!["u1/e f.webm", "u1/e%20f.webm"],
            ),
            (
                format!("{PROJECT}/storage/v1/object/public/audio/u1/l%2520m.webm"),
                vec!["u1/l m.webm", "u1/l%20m.webm"],
            ),
            (
                format!("{PROJECT}/storage/v1/object/public/audio/u1/dl?download"),
                vec!["u1/dl", "u1/dl?download"],
            ),
        ];
        for (raw, names) in cases {
            let objects = plausible_objects(&raw);
            for name in names {
                assert!(
                    objects.contains(&obj("audio", name)),
                    "{raw}: {name} not in {objects:?}"
                );
            }
        }
        assert!(plausible_objects("").is_empty());
        assert!(plausible_objects("audio").is_empty());
    }

    #[test]
    fn paths_without_a_host_or_scheme_and_revealed_by_decoding_still_protect() {
        // Spellings a browser resolves to audio/u/b.webm on the project's host.
        for raw in [
            "/storage/v1/object/public/audio/u/b.webm",
            "/supa/storage/v1/object/public/audio/u/b.webm",
            "storage/v1/object/sign/audio/u/b.webm?token=x",
            "//abc.supabase.co/storage/v1/object/public/audio/u/b.webm",
            "//abc.supabase.co/audio/u/b.webm",
            "../audio/u/b.webm",
            "/../../audio/./u/b.webm",
            "audio/u%5Cb.webm",
            "audio/u/b.webm%23x",
            "audio/u%255Cb.webm",
        ] {
            let objects = plausible_objects(raw);
            assert!(
                objects.contains(&obj("audio", "u/b.webm")),
                "{raw}: not in {objects:?}"
            );
        }
    }

    #[test]
    fn url_names_are_percent_decoded() {
        let raw = format!("{PROJECT}/storage/v1/object/public/audio/user%201/%21%3F%27.webm");
        assert_eq!(parse(&raw), Ok(obj("audio", "user 1/!?'.webm")));
        // Decoded to a character Storage refuses: encoded twice, or not a Storage name.
        for (raw, character) in [
            ("user%201/%C3%BC.webm", 'ü'),
            ("l%2520m.webm", '%'),
            ("a%23b.webm", '#'),
        ] {
            let raw = format!("{PROJECT}/storage/v1/object/public/audio/{raw}");
            assert_eq!(
                parse(&raw),
                Err(PathError::NotAStorageName { character }),
                "{raw}"
            );
        }
        // An encoded slash separates folders like a plain one: the name is the decoded path.
        let raw = format!("{PROJECT}/storage/v1/object/audio/user1%2Fa.webm");
        assert_eq!(parse(&raw), Ok(obj("audio", "user1/a.webm")));
        // Raw unicode is no Storage name either.
        let raw = format!("{PROJECT}/storage/v1/object/audio/ü.webm");
        assert_eq!(
            parse(&raw),
            Err(PathError::NotAStorageName { character: 'ü' })
        );
    }

    #[test]
    fn url_origin_matching_ignores_case_and_default_ports() {
        let raw = "HTTPS://ABC.supabase.co:443/storage/v1/object/audio/a.webm";
        assert_eq!(parse(raw), Ok(obj("audio", "a.webm")));
    }

    #[test]
    fn project_urls_with_a_path_prefix_are_respected() {
        let project = Url::parse("http://localhost:54321/supabase/").unwrap();
        let raw = "http://localhost:54321/supabase/storage/v1/object/audio/a.webm";
        assert_eq!(parse_audio_path(raw, &project), Ok(obj("audio", "a.webm")));
        let raw = "http://localhost:54321/storage/v1/object/audio/a.webm";
        assert!(matches!(
            parse_audio_path(raw, &project),
            Err(PathError::NotStorageObjectUrl { .. })
        ));
    }

    #[test]
    fn urls_of_other_projects_are_refused() {
        for raw in [
            "https://evil.supabase.co/storage/v1/object/audio/a.webm",
            "http://abc.supabase.co/storage/v1/object/audio/a.webm",
            "https://abc.supabase.co:8443/storage/v1/object/audio/a.webm",
            "ftp://abc.supabase.co/storage/v1/object/audio/a.webm",
        ] {
            assert!(
                matches!(parse(raw), Err(PathError::ForeignOrigin { .. })),
                "{raw}: {:?}",
                parse(raw)
            );
        }
        let err = parse("https://evil.supabase.co/storage/v1/object/audio/a.webm").unwrap_err();
        assert_eq!(
            err.to_string(),
            "the audio URL points at https://evil.supabase.co, not this project (https://abc.supabase.co)"
        );
    }

    #[test]
    fn urls_outside_object_routes_are_refused() {
        for raw in [
            format!("{PROJECT}/storage/v1/bucket/audio"),
            format!("{PROJECT}/storage/v1/render/image/audio/a.png"),
            format!("{PROJECT}/audio/a.webm"),
            format!("{PROJECT}/storage/v1/object"),
            PROJECT.to_owned(),
            format!("{PROJECT}/storage/v1/object/list/audio"),
            format!("{PROJECT}/storage/v1/object/info/audio/a.webm"),
            format!("{PROJECT}/storage/v1/object/upload/sign/audio/a.webm"),
        ] {
            assert!(
                matches!(parse(&raw), Err(PathError::NotStorageObjectUrl { .. })),
                "{raw}: {:?}",
                parse(&raw)
            );
        }
        assert_eq!(parse("https:///x"), Err(PathError::InvalidUrl));
        assert_eq!(parse("https://exa mple.com/x"), Err(PathError::InvalidUrl));
    }

    #[test]
    fn empty_values_are_refused() {
        for raw in ["", " ", "\t \n"] {
            assert_eq!(parse(raw), Err(PathError::Empty), "{raw:?}");
        }
    }

    #[test]
    fn a_bucket_without_an_object_is_refused() {
        assert_eq!(parse("audio"), Err(PathError::MissingObject));
        assert_eq!(parse("audio/"), Err(PathError::MissingObject));
        let raw = format!("{PROJECT}/storage/v1/object/public/audio/");
        assert_eq!(parse(&raw), Err(PathError::MissingObject));
        let raw = format!("{PROJECT}/storage/v1/object/public/audio?download");
        assert_eq!(parse(&raw), Err(PathError::MissingObject));
    }

    #[test]
    fn leading_slash_and_empty_segments_are_refused() {
        assert_eq!(parse("/audio/a.webm"), Err(PathError::LeadingSlash));
        assert_eq!(parse("audio/a//b.webm"), Err(PathError::EmptySegment));
        assert_eq!(parse("audio//a.webm"), Err(PathError::EmptySegment));
        assert_eq!(parse("audio/dir/"), Err(PathError::EmptySegment));
        let raw = format!("{PROJECT}/storage/v1/object/audio/a%2F%2Fb");
        assert_eq!(parse(&raw), Err(PathError::EmptySegment));
    }

    #[test]
    fn dot_segments_are_refused_even_when_encoded() {
        for raw in [
            "audio/../a.webm".to_owned(),
            "audio/./a.webm".to_owned(),
            "audio/a/..".to_owned(),
            format!("{PROJECT}/storage/v1/object/audio/../a.webm"),
            format!("{PROJECT}/storage/v1/object/audio/%2e%2E/a.webm"),
            format!("{PROJECT}/storage/v1/object/audio/x%2F..%2Fa.webm"),
            format!("{PROJECT}/storage/v1/object/public/audio/.%2E"),
        ] {
            assert_eq!(parse(&raw), Err(PathError::DotSegment), "{raw}");
        }
        // Dots inside a segment are ordinary characters.
        assert_eq!(parse("audio/..a/b..webm"), Ok(obj("audio", "..a/b..webm")));
    }

    #[test]
    fn backslashes_and_control_characters_are_refused_even_when_encoded() {
        assert_eq!(parse("audio\\a.webm"), Err(PathError::Backslash));
        let raw = format!("{PROJECT}/storage/v1/object/audio/a%5Cb.webm");
        assert_eq!(parse(&raw), Err(PathError::Backslash));
        assert_eq!(parse("audio/a\nb.webm"), Err(PathError::ControlCharacter));
        assert_eq!(
            parse("audio/a\u{7f}.webm"),
            Err(PathError::ControlCharacter)
        );
        assert_eq!(
            parse("audio/a\u{85}.webm"),
            Err(PathError::ControlCharacter)
        );
        let raw = format!("{PROJECT}/storage/v1/object/audio/a%0Ab.webm");
        assert_eq!(parse(&raw), Err(PathError::ControlCharacter));
        let raw = format!("{PROJECT}/storage/v1/object/audio/a.webm?token=\u{0}");
        assert_eq!(parse(&raw), Err(PathError::ControlCharacter));
    }

    #[test]
    fn malformed_percent_encoding_is_refused() {
        for tail in ["a%zz.webm", "a%4", "%FF.webm"] {
            let raw = format!("{PROJECT}/storage/v1/object/audio/{tail}");
            assert_eq!(parse(&raw), Err(PathError::InvalidPercentEncoding), "{raw}");
        }
    }

    #[test]
    fn overlong_names_are_refused() {
        let ok = "a".repeat(MAX_OBJECT_NAME_BYTES);
        assert_eq!(parse(&format!("audio/{ok}")), Ok(obj("audio", &ok)));
        let long = "ü".repeat(513);
        assert_eq!(
            parse(&format!("audio/{long}")),
            Err(PathError::NameTooLong { len: 1026 })
        );
    }

    #[test]
    fn bucket_names_follow_the_documented_rule() {
        for ok in ["audio", "a", "my-bucket_1.v2", &"b".repeat(100)] {
            assert_eq!(validate_bucket_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", ".", "..", "my bucket", "ü", "a:b", &"b".repeat(101)] {
            assert!(
                matches!(
                    validate_bucket_name(bad),
                    Err(PathError::InvalidBucket { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            parse("my bucket/a.webm"),
            Err(PathError::InvalidBucket { .. })
        ));
        let raw = format!("{PROJECT}/storage/v1/object/public/my%20bucket/a.webm");
        assert!(matches!(parse(&raw), Err(PathError::InvalidBucket { .. })));
        assert!(matches!(
            parse("gs://bucket/a.webm"),
            Err(PathError::ForeignOrigin { .. })
        ));
    }

    #[test]
    fn object_ref_displays_the_plain_form_and_checks_its_parts() {
        let object = ObjectRef::new("audio", "u/a.webm").unwrap();
        assert_eq!(object.to_string(), "audio/u/a.webm");
        assert_eq!(parse(&object.to_string()), Ok(object));
        assert_eq!(
            ObjectRef::new("audio", "u/../a"),
            Err(PathError::DotSegment)
        );
    }

    // ---- property tests ----

    fn bucket_strategy() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_.-]{1,30}".prop_filter("reserved or dot bucket names", |b| {
            b != "."
                && b != ".."
                && !ACCESS_MODES.contains(&b.as_str())
                && !RESERVED_ROUTES.contains(&b.as_str())
        })
    }

    fn segment_strategy() -> impl Strategy<Value = String> {
        // Any character Storage allows in a name but '/': includes '?', spaces, quotes.
        "[A-Za-z0-9_!.*'() &$=@;:+,?-]{1,12}"
            .prop_filter("dot segments and surrounding spaces", |s| {
                s != "." && s != ".." && s.trim() == s
            })
    }

    fn name_strategy() -> impl Strategy<Value = String> {
        prop::collection::vec(segment_strategy(), 1..6).prop_map(|segments| segments.join("/"))
    }

    /// Encodes only what a URL path cannot hold, the way a sloppy writer might.
    fn encode_minimal(name: &str) -> String {
        name.chars()
            .map(|c| match c {
                '%' => "%25".to_owned(),
                '?' => "%3F".to_owned(),
                '#' => "%23".to_owned(),
                c => c.to_string(),
            })
            .collect()
    }

    /// Every way of writing `bucket`/`name` the parser must accept.
    fn renderings(bucket: &str, name: &str) -> Vec<String> {
        let slash_encoded: String = name
            .split('/')
            .map(encode_segment)
            .collect::<Vec<_>>()
            .join("%2F");
        let mut forms = vec![format!("{bucket}/{name}")];
        for mode in ["", "public/", "sign/", "authenticated/"] {
            let base = format!("{PROJECT}/storage/v1/object/{mode}{bucket}");
            forms.push(format!("{base}/{}", encode_path(name)));
            let query = if mode == "sign/" {
                "token=a.b.c&download=x.webm"
            } else {
                "download=x.webm"
            };
            forms.push(format!("{base}/{}?{query}", encode_path(name)));
            forms.push(format!("{base}/{}", encode_minimal(name)));
            forms.push(format!("{base}/{slash_encoded}#t=1"));
        }
        forms
    }

    proptest! {
        #[test]
        fn valid_objects_round_trip_through_every_form(
            bucket in bucket_strategy(),
            name in name_strategy(),
        ) {
            let expected = obj(&bucket, &name);
            for raw in renderings(&bucket, &name) {
                prop_assert_eq!(parse(&raw), Ok(expected.clone()), "{}", raw);
                // What a path is read as for deleting is always among what it protects.
                prop_assert!(plausible_objects(&raw).contains(&expected), "{}", raw);
            }
        }

        #[test]
        fn dot_dot_segments_are_always_refused(
            bucket in bucket_strategy(),
            segments in prop::collection::vec(segment_strategy(), 1..5),
            at in any::<prop::sample::Index>(),
            dot in prop::sample::select(vec!["..", "%2e%2e", "%2E.", ".%2E"]),
        ) {
            let mut with_dots = segments.clone();
            with_dots.insert(at.index(segments.len() + 1), "..".to_owned());
            let literal = with_dots.join("/");
            let plain = format!("{bucket}/{literal}");
            prop_assert!(parse(&plain).is_err(), "{}", plain);

            let mut encoded: Vec<String> = segments.iter().map(|s| encode_segment(s)).collect();
            encoded.insert(at.index(segments.len() + 1), dot.to_owned());
            for mode in ["", "public/", "sign/", "authenticated/"] {
                let raw = format!("{PROJECT}/storage/v1/object/{mode}{bucket}/{}", encoded.join("/"));
                prop_assert!(parse(&raw).is_err(), "{}", raw);
            }
            let raw = format!("{PROJECT}/storage/v1/object/{dot}/{}", encoded.join("/"));
            prop_assert!(parse(&raw).is_err(), "{}", raw);
        }

        #[test]
        fn backslashes_and_control_characters_are_always_refused(
            bucket in bucket_strategy(),
            name in name_strategy(),
            form in any::<prop::sample::Index>(),
            at in any::<prop::sample::Index>(),
            bad in prop_oneof!["\\\\", "\\p{Cc}", "%5[Cc]", "%[01][0-9A-Fa-f]", "%7[Ff]", "%C2%[89][0-9A-F]"],
        ) {
            let forms = renderings(&bucket, &name);
            let raw = &forms[form.index(forms.len())];
            let is_url = raw.starts_with("https://");
            if bad.starts_with('%') && !is_url {
                // Escapes mean nothing in the plain form; insert the raw character instead.
                return Ok(());
            }
            let positions: Vec<usize> = raw.char_indices().map(|(i, _)| i).chain([raw.len()]).collect();
            let mut pos = positions[at.index(positions.len())];
            if bad.starts_with('%') {
                // Escapes only decode inside the path, after the authority.
                let path_start = PROJECT.len() + 1;
                let path_end = raw.find(['?', '#']).unwrap_or(raw.len());
                pos = pos.clamp(path_start, path_end);
                while !raw.is_char_boundary(pos) {
                    pos -= 1;
                }
            }
            let mut input = raw.clone();
            input.insert_str(pos, &bad);
            prop_assert!(parse(&input).is_err(), "{:?}", input);
        }

        #[test]
        fn a_raw_question_mark_in_a_url_name_is_never_cut_off(
            bucket in bucket_strategy(),
            name in name_strategy(),
            at in any::<prop::sample::Index>(),
            tail in "[A-Za-z0-9_.-]{0,8}",
        ) {
            // encodeURI leaves '?' as it is: the URL then holds `…/<name-start>?<rest>`.
            let encoded = encode_path(&name);
            let cuts: Vec<usize> = encoded
                .char_indices()
                .map(|(i, _)| i)
                .chain([encoded.len()])
                .collect();
            let cut = cuts[at.index(cuts.len())];
            let (head, rest) = encoded.split_at(cut);
            let raw = format!("{PROJECT}/storage/v1/object/public/{bucket}/{head}?{tail}{rest}");
            if check_query(&format!("{tail}{rest}"), false, false).is_err() {
                // Refused: never the object the name was cut to.
                prop_assert!(parse(&raw).is_err(), "{}", raw);
            }
        }

        #[test]
        fn arbitrary_strings_never_panic(raw in any::<String>()) {
            let _ = parse(&raw);
        }

        #[test]
        fn url_like_strings_never_panic(
            raw in "(https?|HTTP|ftp)?(://)?[a-zA-Z0-9.:@\\[\\]%/?#\\\\ü-]{0,40}(/storage/v1/object/)?[a-z0-9%./?#\\\\ü-]{0,40}",
        ) {
            let _ = parse(&raw);
            let _ = parse(&format!("{PROJECT}{raw}"));
        }
    }
}
