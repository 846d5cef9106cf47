//! The straightforward versions of the two jobs, for comparison: one row at a time, each
//! row one `SELECT … LIMIT 1`, one HTTP call and one `UPDATE`, on one connection, with
//! reqwest as anyone would write it (the two statements prepared once, so a row costs two
//! SQL round trips, not four). The text id is aliased `row_id`: under the name `id` it would
//! shadow the column in `ORDER BY id`, which then sorts text and cannot walk the index. They run against the same mocks and database as the
//! real jobs, on a smaller sample.

use std::time::{Duration, Instant};

use crate::db::BenchDb;
use crate::error::{bail, Context, Result};
use crate::mock::API_KEY;

/// What a naive run did.
pub struct NaiveRun {
    pub rows: u64,
    pub wall: Duration,
}

/// The naive cost update: per row, read the next unpriced row, `GET` its request record,
/// store `response.details.usd`.
pub async fn cost_update(db: &BenchDb, deepgram_url: &str, limit: u64) -> Result<NaiveRun> {
    let client = db.connect().await?;
    let next = client
        .prepare(
            "SELECT id::text AS row_id, stt_provider_request_id FROM transcriptions \
             WHERE audio_cost_usd IS NULL AND stt_provider_request_id IS NOT NULL \
               AND cost_gave_up_at IS NULL \
             ORDER BY id LIMIT 1",
        )
        .await
        .context("naive cost_update: preparing the SELECT")?;
    let store = client
        .prepare(
            "UPDATE transcriptions SET audio_cost_usd = $2::text::numeric, \
             cost_status = 'priced', cost_checked_at = now() WHERE id = $1::text::uuid",
        )
        .await
        .context("naive cost_update: preparing the UPDATE")?;
    let http = reqwest::Client::new();
    let started = Instant::now();
    let mut rows = 0;
    // One more than seeded: the last SELECT finds nothing. The bound stops a loop that
    // would not end if a row could not be priced.
    for _ in 0..=limit {
        let Some(row) = client
            .query_opt(&next, &[])
            .await
            .context("naive cost_update: reading the next row")?
        else {
            break;
        };
        let id: String = row.get(0);
        let request_id: String = row.get(1);
        let (project, request) = request_id
            .split_once('.')
            .with_context(|| format!("naive cost_update: {request_id:?} is not composed"))?;
        let record: serde_json::Value = http
            .get(format!(
                "{deepgram_url}/v1/projects/{project}/requests/{request}"
            ))
            .header("authorization", format!("Token {API_KEY}"))
            .send()
            .await
            .context("naive cost_update: GET request record")?
            .error_for_status()
            .context("naive cost_update: GET request record")?
            .json()
            .await
            .context("naive cost_update: reading the record")?;
        let usd = match &record["response"]["details"]["usd"] {
            serde_json::Value::Number(n) => n.to_string(),
            other => bail!("naive cost_update: no usd in the record of {request}: {other}"),
        };
        client
            .execute(&store, &[&id, &usd])
            .await
            .context("naive cost_update: storing the cost")?;
        rows += 1;
    }
    Ok(NaiveRun {
        rows,
        wall: started.elapsed(),
    })
}

/// The naive audio clean-up: per row, read the next old unmarked row, delete its one object
/// (`DELETE /storage/v1/object/{bucket}/{path}`), mark the row.
pub async fn audio_cleanup(db: &BenchDb, storage_url: &str, limit: u64) -> Result<NaiveRun> {
    let client = db.connect().await?;
    let next = client
        .prepare(
            "SELECT id::text AS row_id, audio_file_path FROM transcriptions \
             WHERE audio_deleted_at IS NULL AND audio_file_path IS NOT NULL \
               AND created_at < now() - interval '30 days' \
             ORDER BY created_at, id LIMIT 1",
        )
        .await
        .context("naive audio_cleanup: preparing the SELECT")?;
    let mark = client
        .prepare("UPDATE transcriptions SET audio_deleted_at = now() WHERE id = $1::text::uuid")
        .await
        .context("naive audio_cleanup: preparing the UPDATE")?;
    let http = reqwest::Client::new();
    let started = Instant::now();
    let mut rows = 0;
    for _ in 0..=limit {
        let Some(row) = client
            .query_opt(&next, &[])
            .await
            .context("naive audio_cleanup: reading the next row")?
        else {
            break;
        };
        let id: String = row.get(0);
        let path: String = row.get(1);
        let (bucket, name) = path
            .split_once('/')
            .with_context(|| format!("naive audio_cleanup: {path:?} has no bucket"))?;
        http.delete(format!("{storage_url}/storage/v1/object/{bucket}/{name}"))
            .header("apikey", API_KEY)
            .header("authorization", format!("Bearer {API_KEY}"))
            .send()
            .await
            .context("naive audio_cleanup: DELETE object")?
            .error_for_status()
            .context("naive audio_cleanup: DELETE object")?;
        client
            .execute(&mark, &[&id])
            .await
            .context("naive audio_cleanup: marking the row")?;
        rows += 1;
    }
    Ok(NaiveRun {
        rows,
        wall: started.elapsed(),
    })
}
