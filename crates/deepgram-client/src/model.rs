//! Typed answers of the Management API, decoded leniently.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Deserializer};
use serde_json::{Number, Value};

/// The most records Deepgram returns per page of `list_requests`.
pub const MAX_LIST_LIMIT: u32 = 1000;

/// A project the API key can see.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct Project {
    /// The project's UUID.
    pub project_id: String,
    /// Its display name (empty when Deepgram sends none).
    #[serde(default, deserialize_with = "lenient::string")]
    pub name: String,
}

/// One past API request as Deepgram records it, carrying its cost once known.
///
/// Decoded leniently: unknown fields are ignored, and a known field with an unexpected
/// type is read as absent rather than failing the whole record. Only `request_id` is
/// required. Match on [`RequestRecord::cost_state`] to know what to do with it.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct RequestRecord {
    /// Deepgram's request id (a UUID).
    pub request_id: String,
    /// The project the request belongs to.
    #[serde(default, deserialize_with = "lenient::opt")]
    pub project_uuid: Option<String>,
    /// When the request was made (`None` if absent or unparseable).
    #[serde(default, deserialize_with = "lenient::datetime")]
    pub created: Option<DateTime<Utc>>,
    /// The API path called, e.g. `/v1/listen?model=nova-3`.
    #[serde(default, deserialize_with = "lenient::opt")]
    pub path: Option<String>,
    /// The id of the API key that made the request.
    #[serde(default, deserialize_with = "lenient::opt")]
    pub api_key_id: Option<String>,
    /// The outcome; `None` when `null` or missing (still processing).
    #[serde(default, deserialize_with = "lenient::opt")]
    pub response: Option<RequestResponse>,
    /// The callback Deepgram called, if any, as sent.
    #[serde(default)]
    pub callback: Option<Value>,
}

/// The `response` part of a [`RequestRecord`].
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct RequestResponse {
    /// Usage details; present once Deepgram has accounted the request.
    #[serde(default, deserialize_with = "lenient::opt")]
    pub details: Option<ResponseDetails>,
    /// The HTTP status the original request got (a number or numeric string in the JSON).
    #[serde(default, deserialize_with = "lenient::status_code")]
    pub code: Option<u16>,
    /// Error message of a failed original request.
    #[serde(default, deserialize_with = "lenient::opt")]
    pub message: Option<String>,
    /// When the original request completed.
    #[serde(default, deserialize_with = "lenient::datetime")]
    pub completed: Option<DateTime<Utc>>,
}

/// `response.details` of a [`RequestRecord`]: what was processed and what it cost.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct ResponseDetails {
    /// The cost exactly as sent (normally a JSON number). Prefer
    /// [`RequestRecord::cost_state`], which interprets it.
    #[serde(default)]
    pub usd: Option<Value>,
    /// Billed duration in seconds.
    #[serde(default, deserialize_with = "lenient::opt")]
    pub duration: Option<f64>,
    /// Total audio in seconds.
    #[serde(default, deserialize_with = "lenient::opt")]
    pub total_audio: Option<f64>,
    /// Audio channels.
    #[serde(default, deserialize_with = "lenient::opt")]
    pub channels: Option<u32>,
    /// Streams.
    #[serde(default, deserialize_with = "lenient::opt")]
    pub streams: Option<u32>,
    /// `sync`, `async` or `streaming`.
    #[serde(default, deserialize_with = "lenient::opt")]
    pub method: Option<String>,
    /// Model tier, e.g. `nova-3`.
    #[serde(default, deserialize_with = "lenient::opt")]
    pub tier: Option<String>,
    /// Model ids used.
    #[serde(default, deserialize_with = "lenient::vec")]
    pub models: Vec<String>,
    /// Tags attached to the request.
    #[serde(default, deserialize_with = "lenient::vec")]
    pub tags: Vec<String>,
    /// Features used (`punctuate`, …).
    #[serde(default, deserialize_with = "lenient::vec")]
    pub features: Vec<String>,
}

/// What a record says about its cost; the four cases the Management API documents plus
/// one for a price the client cannot read.
///
/// The client does not judge the amount (negative, huge): that is the caller's call.
#[derive(Debug, Clone, PartialEq)]
pub enum CostState {
    /// `response.details.usd` is a number: the cost in USD, exactly as Deepgram wrote it.
    /// `0` is a real price, not "pending". Also produced for a string holding a valid JSON
    /// number (e.g. `"0.0043"`). The [`Number`]'s `Display` is the shortest text that
    /// reads back as the same value (e.g. `0.0043`, `1e-7`), suitable for a NUMERIC column.
    Priced(Number),
    /// `response` is `null`, `{}` or missing (or has neither details nor an error code
    /// ≥ 400, whatever its `message`): still processing. Ask again on a later run; never
    /// store 0.
    Pending,
    /// `response.details` is present without `usd` (or with `usd: null`): no price is
    /// available to this key, possibly forever. Do not retry endlessly.
    NoPrice,
    /// `response` has no details but an error `code` (≥ 400), with or without a `message`:
    /// the original request failed and there is no cost to fetch.
    RequestFailed {
        /// The original request's status (always ≥ 400; an `Option` for compatibility).
        code: Option<u16>,
        /// The original request's error message, if given.
        message: Option<String>,
    },
    /// `response.details.usd` is present but not a number (e.g. `"abc"`, `true`): the
    /// value as received. Treated as a state, not a decode error, so one odd record does
    /// not spoil a whole page of `list_requests`.
    InvalidPrice {
        /// The `usd` value as received.
        raw: Value,
    },
}

impl CostState {
    /// The exact price, when [`CostState::Priced`].
    pub fn usd(&self) -> Option<&Number> {
        match self {
            Self::Priced(usd) => Some(usd),
            _ => None,
        }
    }

    /// The price as `f64`, when [`CostState::Priced`] (lossy for display or arithmetic;
    /// store [`CostState::usd`] instead).
    pub fn usd_f64(&self) -> Option<f64> {
        self.usd().and_then(Number::as_f64)
    }
}

impl RequestRecord {
    /// Classifies the record's cost; see [`CostState`].
    pub fn cost_state(&self) -> CostState {
        self.response
            .as_ref()
            .map_or(CostState::Pending, RequestResponse::cost_state)
    }

    /// Decodes a record from either envelope: the bare record or `{"request": {...}}`.
    pub fn from_json(value: Value) -> Result<Self, serde_json::Error> {
        serde_json::from_value(unwrap_envelope(value))
    }
}

impl RequestResponse {
    /// Classifies this response's cost; see [`CostState`].
    pub fn cost_state(&self) -> CostState {
        if let Some(details) = &self.details {
            return match &details.usd {
                None | Some(Value::Null) => CostState::NoPrice,
                Some(Value::Number(usd)) => CostState::Priced(usd.clone()),
                Some(Value::String(text)) => match text.trim().parse::<Number>() {
                    Ok(usd) => CostState::Priced(usd),
                    Err(_) => CostState::InvalidPrice {
                        raw: Value::String(text.clone()),
                    },
                },
                Some(other) => CostState::InvalidPrice { raw: other.clone() },
            };
        }
        // Only an error code says the original request failed: a `message` alone, or
        // with a success code (`{"message": "ok", "code": 200}`), says nothing of the cost.
        if let Some(code) = self.code.filter(|code| *code >= 400) {
            let message = self
                .message
                .as_deref()
                .map(str::trim)
                .filter(|m| !m.is_empty());
            return CostState::RequestFailed {
                code: Some(code),
                message: message.map(str::to_owned),
            };
        }
        CostState::Pending
    }
}

/// Returns the inner record of `{"request": {...}}`, or the value itself when it is a bare
/// record (has `request_id`) or anything else.
pub(crate) fn unwrap_envelope(value: Value) -> Value {
    match value {
        Value::Object(mut map)
            if !map.contains_key("request_id") && map.contains_key("request") =>
        {
            match map.remove("request") {
                Some(inner @ Value::Object(_)) => inner,
                Some(other) => {
                    map.insert("request".to_owned(), other);
                    Value::Object(map)
                }
                None => Value::Object(map),
            }
        }
        other => other,
    }
}

/// One page of `list_requests`, newest first.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RequestsPage {
    /// The page number (from 0).
    pub page: u32,
    /// The page size Deepgram applied.
    pub limit: u32,
    /// The records on this page.
    pub requests: Vec<RequestRecord>,
}

impl RequestsPage {
    /// Whether this is the last page: Deepgram sends no total, so a page shorter than its
    /// limit (or empty, or with a nonsensical limit of 0) is the last one.
    pub fn is_last_page(&self) -> bool {
        self.limit == 0 || self.requests.len() < self.limit as usize
    }
}

/// The body of `list_requests`, before missing `page`/`limit` are filled in.
#[derive(Debug, Deserialize)]
pub(crate) struct RawRequestsPage {
    #[serde(default, deserialize_with = "lenient::opt")]
    pub(crate) page: Option<u32>,
    #[serde(default, deserialize_with = "lenient::opt")]
    pub(crate) limit: Option<u32>,
    #[serde(default)]
    pub(crate) requests: Vec<Value>,
}

/// The body of `list_projects`: `{"projects": [...]}` or, leniently, a bare array.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum ProjectsBody {
    Wrapped { projects: Vec<Project> },
    Bare(Vec<Project>),
}

impl ProjectsBody {
    pub(crate) fn into_projects(self) -> Vec<Project> {
        match self {
            Self::Wrapped { projects } | Self::Bare(projects) => projects,
        }
    }
}

/// Filter on the outcome of listed requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestStatus {
    /// `status=succeeded`
    Succeeded,
    /// `status=failed`
    Failed,
}

impl RequestStatus {
    /// The query-string value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }
}

/// Query of `list_requests`. Every field is optional; unset fields are not sent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListRequestsParams {
    /// Earliest `created` (UTC, sent as `YYYY-MM-DDTHH:MM:SS`, sub-seconds dropped).
    pub start: Option<DateTime<Utc>>,
    /// Latest `created` (UTC, same format).
    pub end: Option<DateTime<Utc>>,
    /// Page size; clamped to `1..=`[`MAX_LIST_LIMIT`].
    pub limit: Option<u32>,
    /// Page number, from 0.
    pub page: Option<u32>,
    /// Only requests with this outcome.
    pub status: Option<RequestStatus>,
}

impl ListRequestsParams {
    /// The query pairs, in a stable order.
    pub(crate) fn query_pairs(&self) -> Vec<(&'static str, String)> {
        const FORMAT: &str = "%Y-%m-%dT%H:%M:%S";
        let mut pairs = Vec::new();
        if let Some(start) = self.start {
            pairs.push(("start", start.format(FORMAT).to_string()));
        }
        if let Some(end) = self.end {
            pairs.push(("end", end.format(FORMAT).to_string()));
        }
        if let Some(limit) = self.limit {
            pairs.push(("limit", limit.clamp(1, MAX_LIST_LIMIT).to_string()));
        }
        if let Some(page) = self.page {
            pairs.push(("page", page.to_string()));
        }
        if let Some(status) = self.status {
            pairs.push(("status", status.as_str().to_owned()));
        }
        pairs
    }
}

/// Deserializers that read a field of the wrong type as absent.
mod lenient {
    use super::*;
    use serde::de::DeserializeOwned;

    pub(super) fn opt<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: DeserializeOwned,
    {
        let value = Option::<Value>::deserialize(deserializer)?;
        Ok(value.and_then(|v| serde_json::from_value(v).ok()))
    }

    pub(super) fn vec<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: DeserializeOwned,
    {
        Ok(opt(deserializer)?.unwrap_or_default())
    }

    pub(super) fn string<'de, D>(deserializer: D) -> Result<String, D::Error>
    where
        D: Deserializer<'de>,
    {
        Ok(opt(deserializer)?.unwrap_or_default())
    }

    pub(super) fn status_code<'de, D>(deserializer: D) -> Result<Option<u16>, D::Error>
    where
        D: Deserializer<'de>,
    {
        Ok(match Option::<Value>::deserialize(deserializer)? {
            Some(Value::Number(n)) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
            Some(Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        })
    }

    pub(super) fn datetime<'de, D>(deserializer: D) -> Result<Option<DateTime<Utc>>, D::Error>
    where
        D: Deserializer<'de>,
    {
        Ok(opt::<D, String>(deserializer)?.and_then(|s| parse_datetime(&s)))
    }
}

/// Reads RFC 3339 (`2026-10-28T02:00:15.234567Z`) or, as UTC, a timestamp without offset.
fn parse_datetime(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(text) {
        return Some(dt.with_timezone(&Utc));
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
        .map(|naive| naive.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn state(response: Value) -> CostState {
        let record = RequestRecord::from_json(json!({"request_id": "r", "response": response}))
            .expect("record decodes");
        record.cost_state()
    }

    #[test]
    fn usd_present_is_priced_with_the_exact_number() {
        let got = state(json!({"details": {"usd": 0.0043}, "code": 200}));
        assert_eq!(
            got.usd().map(ToString::to_string).as_deref(),
            Some("0.0043")
        );
        assert_eq!(got.usd_f64(), Some(0.0043));
    }

    #[test]
    fn usd_zero_is_priced_not_pending() {
        let got = state(json!({"details": {"usd": 0}, "code": 200}));
        assert_eq!(got, CostState::Priced(Number::from(0)));
    }

    #[test]
    fn negative_usd_is_passed_through_for_the_caller_to_judge() {
        assert_eq!(
            state(json!({"details": {"usd": -1.5}})).usd_f64(),
            Some(-1.5)
        );
    }

    #[test]
    fn null_empty_or_missing_response_is_pending() {
        assert_eq!(state(Value::Null), CostState::Pending);
        assert_eq!(state(json!({})), CostState::Pending);
        let missing = RequestRecord::from_json(json!({"request_id": "r"})).expect("decodes");
        assert_eq!(missing.cost_state(), CostState::Pending);
        // A response that is not an object at all cannot carry a price either.
        assert_eq!(state(json!("processing")), CostState::Pending);
    }

    #[test]
    fn details_without_usd_is_no_price() {
        assert_eq!(
            state(json!({"details": {"duration": 3.2}, "code": 200})),
            CostState::NoPrice
        );
        assert_eq!(state(json!({"details": {}})), CostState::NoPrice);
        assert_eq!(state(json!({"details": {"usd": null}})), CostState::NoPrice);
    }

    #[test]
    fn error_code_or_message_without_details_is_request_failed() {
        assert_eq!(
            state(json!({"code": 400, "message": "Bad audio"})),
            CostState::RequestFailed {
                code: Some(400),
                message: Some("Bad audio".into())
            }
        );
        assert_eq!(
            state(json!({"code": "502"})),
            CostState::RequestFailed {
                code: Some(502),
                message: None
            }
        );
    }

    #[test]
    fn a_message_without_an_error_code_is_not_a_failed_request() {
        for response in [
            json!({"code": 200, "message": ""}),
            json!({"message": "ok", "code": 200}),
            json!({"message": "failed to fetch audio"}),
            json!({"code": 399, "message": "odd"}),
        ] {
            assert_eq!(state(response.clone()), CostState::Pending, "{response}");
        }
    }

    #[test]
    fn numeric_string_usd_is_priced_and_other_strings_are_invalid() {
        assert_eq!(
            state(json!({"details": {"usd": "0.25"}}))
                .usd()
                .map(ToString::to_string),
            Some("0.25".to_owned())
        );
        assert_eq!(
            state(json!({"details": {"usd": "abc"}})),
            CostState::InvalidPrice { raw: json!("abc") }
        );
        assert_eq!(
            state(json!({"details": {"usd": true}})),
            CostState::InvalidPrice { raw: json!(true) }
        );
    }

    #[test]
    fn envelope_and_bare_record_decode_the_same() {
        let bare =
            json!({"request_id": "abc", "project_uuid": "p", "response": {"details": {"usd": 1}}});
        let wrapped = json!({"request": bare.clone()});
        assert_eq!(
            RequestRecord::from_json(bare).expect("bare"),
            RequestRecord::from_json(wrapped).expect("wrapped")
        );
    }

    #[test]
    fn record_without_request_id_fails_to_decode() {
        assert!(RequestRecord::from_json(json!({"request": "nope"})).is_err());
        assert!(RequestRecord::from_json(json!({"project_uuid": "p"})).is_err());
    }

    #[test]
    fn wrong_types_in_optional_fields_are_read_as_absent() {
        let record = RequestRecord::from_json(json!({
            "request_id": "r",
            "project_uuid": 42,
            "created": "not a date",
            "path": ["x"],
            "unknown": {"deep": true},
            "response": {"details": {"usd": 0.5, "channels": "two", "models": "m", "tags": [1, 2]}}
        }))
        .expect("decodes");
        assert_eq!(record.project_uuid, None);
        assert_eq!(record.created, None);
        assert_eq!(record.path, None);
        let details = record.response.and_then(|r| r.details).expect("details");
        assert_eq!(details.channels, None);
        assert!(details.models.is_empty() && details.tags.is_empty());
        assert_eq!(details.usd, Some(json!(0.5)));
    }

    #[test]
    fn timestamps_parse_with_or_without_offset() {
        let expected = Utc
            .with_ymd_and_hms(2026, 10, 28, 2, 0, 15)
            .single()
            .expect("valid date");
        let with_z = parse_datetime("2026-10-28T02:00:15Z");
        assert_eq!(with_z, Some(expected));
        let naive = parse_datetime("2026-10-28T02:00:15.5").expect("parses");
        assert_eq!(naive.timestamp(), expected.timestamp());
        let offset = parse_datetime("2026-10-28T04:00:15+02:00");
        assert_eq!(offset, Some(expected));
    }

    #[test]
    fn query_pairs_format_dates_and_clamp_the_limit() {
        let params = ListRequestsParams {
            start: Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).single(),
            end: Some(
                Utc.with_ymd_and_hms(2026, 1, 3, 0, 0, 0)
                    .single()
                    .expect("valid")
                    + chrono::Duration::milliseconds(999),
            ),
            limit: Some(5000),
            page: Some(2),
            status: Some(RequestStatus::Succeeded),
        };
        assert_eq!(
            params.query_pairs(),
            vec![
                ("start", "2026-01-02T03:04:05".to_owned()),
                ("end", "2026-01-03T00:00:00".to_owned()),
                ("limit", "1000".to_owned()),
                ("page", "2".to_owned()),
                ("status", "succeeded".to_owned()),
            ]
        );
        assert!(ListRequestsParams::default().query_pairs().is_empty());
    }

    #[test]
    fn short_or_empty_page_is_the_last() {
        let record = RequestRecord {
            request_id: "r".into(),
            ..RequestRecord::default()
        };
        let full = RequestsPage {
            page: 0,
            limit: 2,
            requests: vec![record.clone(), record.clone()],
        };
        assert!(!full.is_last_page());
        let short = RequestsPage {
            requests: vec![record],
            ..full.clone()
        };
        assert!(short.is_last_page());
        let empty = RequestsPage {
            requests: vec![],
            ..full.clone()
        };
        assert!(empty.is_last_page());
        let zero_limit = RequestsPage { limit: 0, ..full };
        assert!(zero_limit.is_last_page());
    }
}
