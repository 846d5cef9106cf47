//! What Storage answers, decoded leniently: only the fields this crate relies on are
//! required, unknown fields are ignored, and `null`/`""` are tolerated where the real
//! server sends them.

use serde::{Deserialize, Deserializer};

use crate::Error;

/// A bucket, as `GET /storage/v1/bucket/{bucket}` describes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct Bucket {
    /// The bucket id (the name used in object paths).
    pub id: String,
    /// The display name; equal to `id` for buckets made through the API.
    pub name: String,
    /// Whether objects are readable without a key.
    #[serde(default, deserialize_with = "lenient_bool")]
    pub public: bool,
    /// Largest object size in bytes, when the bucket sets one.
    #[serde(default, deserialize_with = "lenient_u64")]
    pub file_size_limit: Option<u64>,
    /// Allowed MIME types, when the bucket restricts them.
    #[serde(default, deserialize_with = "lenient_strings")]
    pub allowed_mime_types: Option<Vec<String>>,
    /// Creation time as Storage wrote it (RFC 3339).
    #[serde(default, deserialize_with = "lenient_string")]
    pub created_at: Option<String>,
    /// Last update time as Storage wrote it (RFC 3339).
    #[serde(default, deserialize_with = "lenient_string")]
    pub updated_at: Option<String>,
}

/// One entry of a listing: an object, or a folder (no `id`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct ObjectEntry {
    /// The name relative to the listed prefix.
    pub name: String,
    /// The object id; `None` for folders.
    #[serde(default, deserialize_with = "lenient_string")]
    pub id: Option<String>,
    /// Creation time as Storage wrote it (RFC 3339); `None` for folders.
    #[serde(default, deserialize_with = "lenient_string")]
    pub created_at: Option<String>,
    /// Last update time (RFC 3339); `None` for folders.
    #[serde(default, deserialize_with = "lenient_string")]
    pub updated_at: Option<String>,
    /// Last access time (RFC 3339); `None` for folders.
    #[serde(default, deserialize_with = "lenient_string")]
    pub last_accessed_at: Option<String>,
    /// Storage's metadata object (`eTag`, `size`, `mimetype`, …), as sent.
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
}

impl ObjectEntry {
    /// Whether this entry is a folder (Storage sends folders without an `id`).
    pub fn is_folder(&self) -> bool {
        self.id.is_none()
    }

    /// The object's size in bytes from its metadata, when present.
    pub fn size(&self) -> Option<u64> {
        let size = self.metadata.as_ref()?.get("size")?;
        size.as_u64()
            .or_else(|| size.as_str().and_then(|s| s.parse().ok()))
    }
}

/// What a bulk delete achieved, chunk by chunk. Nothing Storage confirmed is ever lost:
/// when a later chunk fails, the names confirmed by earlier chunks are still here.
///
/// Every distinct requested name ends up in exactly one of `deleted`, `not_returned`,
/// `failed` or `skipped`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeleteOutcome {
    /// Names Storage listed as deleted by this call.
    pub deleted: Vec<String>,
    /// Names sent in a successful call that Storage did not list: the object did not
    /// exist, or the bucket does not exist (Storage answers `[]` for both). They are
    /// "already gone" only when the bucket is known to exist.
    pub not_returned: Vec<String>,
    /// Chunks whose call failed (after retries); their names' fate is unknown (Storage may
    /// have deleted some before failing). Deleting them again is safe.
    pub failed: Vec<FailedChunk>,
    /// Names never sent because an earlier chunk failed in a way that would fail every
    /// chunk (bad key, server down, rate limited); the cause is the last `failed` entry.
    pub skipped: Vec<String>,
    /// Names the caller's recheck took out before a retry: not deleted by this call (an
    /// earlier attempt may have deleted them before failing).
    pub withheld: Vec<String>,
}

impl DeleteOutcome {
    /// Whether every chunk got an answer (no `failed`, no `skipped`).
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty() && self.skipped.is_empty()
    }

    /// The first chunk error, if any.
    pub fn first_error(&self) -> Option<&Error> {
        self.failed.first().map(|chunk| &chunk.error)
    }

    /// Names whose fate is unknown: those of failed chunks and skipped ones.
    pub fn unconfirmed(&self) -> impl Iterator<Item = &String> + '_ {
        self.failed
            .iter()
            .flat_map(|chunk| chunk.names.iter())
            .chain(self.skipped.iter())
    }
}

/// One bulk-delete call that failed, with the names it carried.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FailedChunk {
    /// The names sent in the failed call.
    pub names: Vec<String>,
    /// Why it failed.
    pub error: Error,
}

/// The deleted-object array: only `name` matters; entries without a string name are
/// dropped (their objects then count as "not returned", never as deleted). Read without
/// building the records (1 000 of them per bulk delete, each with its metadata): every
/// other field is skipped as it is parsed.
pub(crate) fn deleted_names(body: &[u8]) -> Result<Vec<String>, serde_json::Error> {
    let entries: Vec<NameOnly> = serde_json::from_slice(body)?;
    Ok(entries.into_iter().filter_map(|e| e.0).collect())
}

/// One entry of the deleted-object array: its `name` when the entry is an object whose
/// `name` is a string, else nothing.
struct NameOnly(Option<String>);

impl<'de> Deserialize<'de> for NameOnly {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{IgnoredAny, MapAccess, Visitor};

        struct Entry;
        impl<'de> Visitor<'de> for Entry {
            type Value = NameOnly;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object record")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NameOnly, A::Error> {
                let mut name = None;
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    // A repeated key: the last one counts, as in a JSON object read whole.
                    if key == "name" {
                        name = map.next_value::<StringOrNot>()?.0;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(NameOnly(name))
            }
            // Anything but an object is no record: skipped, as it was.
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<NameOnly, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(NameOnly(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<NameOnly, E> {
                Ok(NameOnly(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<NameOnly, E> {
                Ok(NameOnly(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<NameOnly, E> {
                Ok(NameOnly(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<NameOnly, E> {
                Ok(NameOnly(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<NameOnly, E> {
                Ok(NameOnly(None))
            }
            fn visit_unit<E>(self) -> Result<NameOnly, E> {
                Ok(NameOnly(None))
            }
        }
        d.deserialize_any(Entry)
    }
}

/// A value kept when it is a string.
struct StringOrNot(Option<String>);

impl<'de> Deserialize<'de> for StringOrNot {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => StringOrNot(Some(s)),
            _ => StringOrNot(None),
        })
    }
}

fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Some(s),
        _ => None,
    })
}

fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Bool(b) => b,
        serde_json::Value::String(s) => s == "true",
        _ => false,
    })
}

fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })
}

fn lenient_strings<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Array(items) => Some(
            items
                .into_iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
        ),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_decodes_with_nulls_and_unknown_fields() {
        let bucket: Bucket = serde_json::from_str(
            r#"{"id":"audio","name":"audio","owner":"","public":false,"type":"STANDARD",
                "file_size_limit":null,"allowed_mime_types":null,
                "created_at":"2025-01-01T00:00:00.000Z","updated_at":"2025-01-01T00:00:00.000Z"}"#,
        )
        .unwrap();
        assert_eq!(bucket.id, "audio");
        assert!(!bucket.public);
        assert_eq!(bucket.file_size_limit, None);
        assert_eq!(
            bucket.created_at.as_deref(),
            Some("2025-01-01T00:00:00.000Z")
        );
    }

    #[test]
    fn bucket_accepts_limits_as_strings() {
        let bucket: Bucket = serde_json::from_str(
            r#"{"id":"a","name":"a","public":true,"file_size_limit":"52428800","allowed_mime_types":["audio/webm"]}"#,
        )
        .unwrap();
        assert!(bucket.public);
        assert_eq!(bucket.file_size_limit, Some(52_428_800));
        assert_eq!(
            bucket.allowed_mime_types,
            Some(vec!["audio/webm".to_owned()])
        );
    }

    #[test]
    fn deleted_names_skips_entries_without_a_string_name() {
        let names = deleted_names(
            br#"[{"name":"a","owner":"","metadata":null},{"id":"x"},{"name":null},{"name":"b"}]"#,
        )
        .unwrap();
        assert_eq!(names, ["a", "b"]);
        assert!(deleted_names(b"{}").is_err());
        // Entries that are no object, escapes, nesting and a repeated key.
        let names = deleted_names(
            br#"["x", 3, null, true, [{"name":"in"}], {"metadata":{"name":"meta"},"name":"q\u00e9\"1"},
                {"name":"first","name":"last"}, {"name":{"nested":1}}]"#,
        )
        .unwrap();
        assert_eq!(names, ["q\u{e9}\"1", "last"]);
        assert!(deleted_names(b"[{\"name\":\"a\"}").is_err());
    }

    #[test]
    fn folder_entries_have_no_id() {
        let entries: Vec<ObjectEntry> = serde_json::from_str(
            r#"[{"name":"dir","id":null,"updated_at":null,"created_at":null,"last_accessed_at":null,"metadata":null},
                {"name":"a.webm","id":"1b5e","metadata":{"size":"42"}}]"#,
        )
        .unwrap();
        assert!(entries[0].is_folder());
        assert!(!entries[1].is_folder());
        assert_eq!(entries[1].size(), Some(42));
    }
}
