//! The execution history: filters, a default 30-day window, keyset paging.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Duration, Utc};
use db::executions::HistoryQuery;
use jobs_core::{CancelRequest, Status, Trigger};
use serde::Deserialize;
use utoipa::IntoParams;

use super::views::{
    rfc3339, CancelRequested, Data, ErrorBody, ExecutionPage, ExecutionView, StatusView,
};
use super::{ApiError, AppState};

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 500;
const DEFAULT_WINDOW_DAYS: i64 = 30;
/// The oldest time PostgreSQL's `timestamptz` holds (4714-11-24 BC), in Unix microseconds:
/// an older cursor could only fail in the database. (Its newest, 294276 AD, is beyond
/// what chrono holds, so chrono's own limit applies there.)
const PG_MIN_MICROS: i64 = -210_866_803_200_000_000;

/// History filters. Every value is checked and a bad one is named in a 400.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// Only this job.
    #[param(max_length = 100)]
    job_name: Option<String>,
    /// Only this status: `running`, `success`, `failed` or `skipped` (slots not run).
    #[param(value_type = Option<String>, pattern = "^(running|success|failed|skipped)$")]
    status: Option<String>,
    /// Only runs started this way: `schedule`, `catch_up` or `manual`.
    #[param(value_type = Option<String>, pattern = "^(schedule|catch_up|manual)$")]
    trigger: Option<String>,
    /// `false`: only real runs; `true`: only dry runs.
    #[param(value_type = Option<bool>)]
    dry_run: Option<String>,
    /// Oldest start time, RFC 3339 (default: 30 days before `until`).
    #[param(value_type = Option<String>, format = DateTime)]
    since: Option<String>,
    /// Start times before this, RFC 3339 (default: now).
    #[param(value_type = Option<String>, format = DateTime)]
    until: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 500)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// The execution history, newest first.
#[utoipa::path(
    get,
    path = "/internal/api/v1/jobs/executions",
    tag = "executions",
    security(("bearer" = [])),
    params(HistoryParams),
    responses(
        (status = 200, description = "A page of executions, newest first", body = ExecutionPage),
        (status = 400, description = "A parameter is invalid; the message names it", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
pub async fn history(
    state: web::Data<AppState>,
    params: web::Query<HistoryParams>,
) -> Result<HttpResponse, ApiError> {
    let query = parse(&params, Utc::now())?;
    let mut conn = state.pool.get().await.map_err(ApiError::database)?;
    let mut rows = db::executions::history(&mut conn, &query).await?;
    let more = rows.len() as i64 > query.limit;
    rows.truncate(query.limit as usize);
    let next_cursor = if more {
        rows.last().map(|r| encode_cursor(r.started_at, r.id))
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(ExecutionPage {
        data: rows.iter().map(ExecutionView::from).collect(),
        next_cursor,
        since: rfc3339(query.since),
        until: rfc3339(query.until),
    }))
}

/// One execution, with live stats while it runs.
#[utoipa::path(
    get,
    path = "/internal/api/v1/jobs/executions/{id}",
    tag = "executions",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "Execution id")),
    responses(
        (status = 200, description = "The execution", body = Data<ExecutionView>),
        (status = 400, description = "The id is not a number", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 404, description = "No such execution", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
pub async fn execution(
    state: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = state.pool.get().await.map_err(ApiError::database)?;
    match db::execution_log::find(&mut conn, *id).await? {
        Some(record) => Ok(HttpResponse::Ok().json(Data {
            data: ExecutionView::from(&record),
        })),
        None => Err(ApiError::not_found(format!("no execution {id}"))),
    }
}

/// Asks a running execution to stop, on whichever server runs it.
#[utoipa::path(
    post,
    path = "/internal/api/v1/jobs/executions/{id}/cancel",
    tag = "executions",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "Execution id")),
    responses(
        (status = 202, description = "Asked to stop: it ends `failed` with `cancelled by …` and the counters it reached (`status` `running`); a row no live server holds (lease expired, or none: written by another system) is closed at once (`status` `failed`)", body = Data<CancelRequested>),
        (status = 400, description = "The id is not a number", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 403, description = "The viewer token may not cancel; or, without ADMIN_TOKEN, a cross-origin request", body = ErrorBody),
        (status = 404, description = "No such execution", body = ErrorBody),
        (status = 409, description = "The execution is not running", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
pub async fn cancel(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let actor = super::auth::actor(&req);
    // Recorded in the row whether it runs here or elsewhere: the history shows who asked,
    // and the server that runs it learns of it at its next heartbeat.
    let mut conn = state.pool.get().await.map_err(ApiError::database)?;
    let status = match db::execution_log::request_cancel(&mut conn, id, actor).await? {
        CancelRequest::Requested => StatusView::Running,
        // No server held it: it was closed by the request itself.
        CancelRequest::Closed => StatusView::Failed,
        CancelRequest::NotRunning => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "not_running",
                format!("execution {id} is not running"),
            ))
        }
        CancelRequest::NotFound => return Err(ApiError::not_found(format!("no execution {id}"))),
    };
    // Closed at once: the answer says how, as the history will.
    let error_message = if matches!(status, StatusView::Failed) {
        db::executions::by_ids(&mut conn, &[id])
            .await
            .ok()
            .and_then(|rows| rows.into_iter().next())
            .and_then(|row| row.error_message)
    } else {
        None
    };
    drop(conn);
    if matches!(status, StatusView::Running) {
        // Running here: stop it now rather than at the next heartbeat.
        state.runner.cancel(id, format!("cancelled by {actor}"));
    }
    Ok(HttpResponse::Accepted().json(Data {
        data: CancelRequested {
            execution_id: id,
            status,
            requested_by: actor.to_owned(),
            error_message,
        },
    }))
}

/// An empty value (`?status=`) counts as not given.
fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

/// The earliest time a filter may name, 0001-01-01T00:00:00Z (checked when compiled): in
/// UTC a filter's times must be writable back in RFC 3339, whose years have four digits
/// (`+10000-…` or `-0001-…` are not RFC 3339).
const EARLIEST: DateTime<Utc> = match DateTime::<Utc>::from_timestamp(-62_135_596_800, 0) {
    Some(t) => t,
    None => panic!("0001-01-01 is within chrono's range"),
};

/// The latest time a filter may name, 9999-12-31T23:59:59.999999Z (checked when compiled).
const LATEST: DateTime<Utc> = match DateTime::<Utc>::from_timestamp(253_402_300_799, 999_999_000) {
    Some(t) => t,
    None => panic!("9999-12-31 is within chrono's range"),
};

fn parse(params: &HistoryParams, now: DateTime<Utc>) -> Result<HistoryQuery, ApiError> {
    let time = |name: &str, raw: &Option<String>| -> Result<Option<DateTime<Utc>>, ApiError> {
        given(raw)
            .map(|v| {
                let t = DateTime::parse_from_rfc3339(v)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|_| {
                        ApiError::bad_parameter(
                            name,
                            format!(
                                "must be an RFC 3339 time such as 2026-11-01T00:00:00Z, got {v:?}"
                            ),
                        )
                    })?;
                if !(EARLIEST..=LATEST).contains(&t) {
                    return Err(ApiError::bad_parameter(
                        name,
                        format!(
                            "must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z in UTC, got {v:?}"
                        ),
                    ));
                }
                Ok(t)
            })
            .transpose()
    };
    let until = time("until", &params.until)?.unwrap_or(now);
    let since = time("since", &params.since)?
        .unwrap_or_else(|| (until - Duration::days(DEFAULT_WINDOW_DAYS)).max(EARLIEST));
    if since > until {
        return Err(ApiError::bad_parameter("since", "must not be after until"));
    }
    let status = given(&params.status)
        .map(|s| {
            Status::parse(s).ok_or_else(|| {
                ApiError::bad_parameter(
                    "status",
                    format!("must be running, success, failed or skipped, got {s:?}"),
                )
            })
        })
        .transpose()?;
    let trigger = given(&params.trigger)
        .map(|t| {
            Trigger::parse(t).ok_or_else(|| {
                ApiError::bad_parameter(
                    "trigger",
                    format!("must be schedule, catch_up or manual, got {t:?}"),
                )
            })
        })
        .transpose()?;
    let dry_run = match given(&params.dry_run) {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(other) => {
            return Err(ApiError::bad_parameter(
                "dry_run",
                format!("must be true or false, got {other:?}"),
            ))
        }
    };
    let limit = match given(&params.limit) {
        None => DEFAULT_LIMIT,
        Some(raw) => match raw.parse::<i64>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_parameter(
                    "limit",
                    format!("must be a whole number from 1 to {MAX_LIMIT}, got {raw:?}"),
                ))
            }
        },
    };
    let job_name = match given(&params.job_name) {
        Some(name) if name.len() > 100 => {
            return Err(ApiError::bad_parameter(
                "job_name",
                "must be at most 100 characters",
            ))
        }
        // PostgreSQL text cannot hold NUL, and no job name has control characters.
        Some(name) if name.chars().any(char::is_control) => {
            return Err(ApiError::bad_parameter(
                "job_name",
                "must not contain control characters",
            ))
        }
        other => other.map(str::to_owned),
    };
    let before = given(&params.cursor)
        .map(|c| {
            decode_cursor(c).ok_or_else(|| {
                ApiError::bad_parameter("cursor", "is not a cursor this API returned")
            })
        })
        .transpose()?;
    Ok(HistoryQuery {
        job_name,
        status,
        trigger,
        dry_run,
        since,
        until,
        before,
        limit,
    })
}

/// An opaque cursor: the last row's start time (microseconds) and id, hex-encoded.
fn encode_cursor(started_at: DateTime<Utc>, id: i64) -> String {
    let text = format!("v1:{}:{id}", started_at.timestamp_micros());
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_cursor(cursor: &str) -> Option<(DateTime<Utc>, i64)> {
    if !cursor.len().is_multiple_of(2) || cursor.len() > 128 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..cursor.len())
        .step_by(2)
        .map(|i| {
            cursor
                .get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect();
    let text = String::from_utf8(bytes?).ok()?;
    let mut parts = text.split(':');
    if parts.next()? != "v1" {
        return None;
    }
    let micros: i64 = parts.next()?.parse().ok()?;
    let id: i64 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || id < 0 || micros < PG_MIN_MICROS {
        return None;
    }
    Some((DateTime::from_timestamp_micros(micros)?, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let t = DateTime::parse_from_rfc3339("2026-11-28T02:00:00.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(decode_cursor(&encode_cursor(t, 42)), Some((t, 42)));
        for bad in [
            "",
            "zz",
            "abc",
            "76313a",
            "not-a-cursor",
            "7631",
            &"00".repeat(100),
        ] {
            assert_eq!(decode_cursor(bad), None, "{bad}");
        }
        // A time PostgreSQL cannot hold, though chrono can, and one beyond chrono.
        let ancient = DateTime::from_timestamp_micros(PG_MIN_MICROS - 1).unwrap();
        assert_eq!(decode_cursor(&encode_cursor(ancient, 1)), None);
        let oldest = DateTime::from_timestamp_micros(PG_MIN_MICROS).unwrap();
        assert_eq!(decode_cursor(&encode_cursor(oldest, 1)), Some((oldest, 1)));
        let beyond: String = format!("v1:{}:1", i64::MAX)
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(decode_cursor(&beyond), None);
    }

    #[test]
    fn times_rfc_3339_cannot_write_back_are_refused_and_the_default_window_stops_at_year_1() {
        let now = Utc::now();
        let query = |q: &str| {
            let params = actix_web::web::Query::<HistoryParams>::from_query(q).unwrap();
            parse(&params, now)
        };
        for bad in [
            "until=9999-12-31T23:59:59-23:59",
            "until=0000-01-01T00:00:00Z",
            "since=0000-12-31T23:59:59Z",
            "since=0001-01-01T00:00:00%2B01:00",
        ] {
            let error = query(bad).map(|_| ()).unwrap_err();
            assert_eq!(error.status, StatusCode::BAD_REQUEST, "{bad}");
        }
        let edge = query("until=0001-01-02T00:00:00Z&since=0001-01-01T00:00:00Z").unwrap();
        assert_eq!(rfc3339(edge.since), "0001-01-01T00:00:00.000Z");
        let last = query("until=9999-12-31T23:59:59Z").unwrap();
        assert_eq!(rfc3339(last.until), "9999-12-31T23:59:59.000Z");
        // 30 days before 0001-01-05 would be year 0: the window starts at year 1.
        let clamped = query("until=0001-01-05T00:00:00Z").unwrap();
        assert_eq!(rfc3339(clamped.since), "0001-01-01T00:00:00.000Z");
    }
}
