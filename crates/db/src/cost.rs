//! Queries of the `cost_update` job over `transcriptions`.
//!
//! Three statements per batch, whatever its size: [`pending_batch`] reads the next rows to
//! price (keyset pagination by id through the partial index
//! `idx_transcriptions_cost_pending`), [`store_costs`] writes the prices found and
//! [`record_checks`] records why the other rows got none. Both writes are guarded by
//! `audio_cost_usd IS NULL` and by the request id the row was read with: a row priced
//! meanwhile by someone else, or whose request id changed since it was read (the price
//! found would be another request's), is left as it is. Every statement runs with the
//! planner pinned to its index-ordered plan (see [`crate::index_plan`]), so an un-analyzed
//! table cannot turn the page query into a sort of the whole backlog.

use bigdecimal::BigDecimal;
use diesel::sql_types::{Array, BigInt, Bool, Integer, Nullable, Numeric, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::{index_plan, DbError};

/// Longest `stt_provider_request_id` read, in characters. A longer value is not loaded
/// (it cannot be a request id, and loading it would make memory depend on the data):
/// [`PendingCost::request_id`] is `None` and [`PendingCost::request_id_chars`] tells its
/// length.
pub const MAX_REQUEST_ID_CHARS: i32 = 1024;

/// A transcription that has a request id and no cost yet, and was not given up on.
#[derive(Debug, Clone, PartialEq, Eq, diesel::QueryableByName)]
pub struct PendingCost {
    /// The transcription.
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    pub id: Uuid,
    /// `stt_provider_request_id` as stored (untrimmed); `None` when longer than
    /// [`MAX_REQUEST_ID_CHARS`].
    #[diesel(sql_type = Nullable<Text>)]
    pub request_id: Option<String>,
    /// The length of `stt_provider_request_id` in characters.
    #[diesel(sql_type = Integer)]
    pub request_id_chars: i32,
    /// `cost_check_count`: earlier runs whose answer carried no price.
    #[diesel(sql_type = Integer)]
    pub check_count: i32,
}

/// Why one row got no cost in this run, to be recorded on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CostCheck {
    /// The transcription.
    pub id: Uuid,
    /// The request id the row was read with; the check is recorded only if the row still
    /// has it. `None` when it was too long to load ([`PendingCost::request_id`]).
    pub request_id: Option<String>,
    /// A short code stored in `cost_status` (`pending`, `no_price`, …).
    pub status: String,
    /// The reason in words, stored in `cost_error`.
    pub error: Option<String>,
    /// Whether this run counts towards giving up (adds one to `cost_check_count`).
    pub counted: bool,
    /// Whether to stop asking about this row (sets `cost_gave_up_at`).
    pub give_up: bool,
}

/// Up to `limit` rows to price, in id order, after `after` (from the start when `None`).
///
/// Selects rows with a request id, no cost and no `cost_gave_up_at`, which is exactly the
/// predicate of the partial index, so the scan reads only the backlog.
pub async fn pending_batch(
    conn: &mut AsyncPgConnection,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<PendingCost>, DbError> {
    index_plan::begin(conn).await?;
    let rows = match after {
        None => {
            diesel::sql_query(pending_sql(false))
                .bind::<BigInt, _>(limit)
                .load(conn)
                .await
        }
        Some(after) => {
            diesel::sql_query(pending_sql(true))
                .bind::<diesel::sql_types::Uuid, _>(after)
                .bind::<BigInt, _>(limit)
                .load(conn)
                .await
        }
    };
    index_plan::finish(conn, rows).await
}

/// The statement of [`pending_batch`]: `$1` is the limit, or the cursor and `$2` the limit.
fn pending_sql(with_cursor: bool) -> String {
    let cursor = if with_cursor {
        "AND id > $1 ORDER BY id LIMIT $2"
    } else {
        "ORDER BY id LIMIT $1"
    };
    format!(
        "SELECT id, \
           CASE WHEN char_length(stt_provider_request_id) <= {MAX_REQUEST_ID_CHARS} \
             THEN stt_provider_request_id END AS request_id, \
           char_length(stt_provider_request_id) AS request_id_chars, \
           cost_check_count AS check_count \
         FROM transcriptions \
         WHERE audio_cost_usd IS NULL \
           AND stt_provider_request_id IS NOT NULL \
           AND cost_gave_up_at IS NULL \
         {cursor}"
    )
}

#[derive(diesel::QueryableByName)]
struct UpdatedId {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
}

/// A price found for a row, with the request id the row was read with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundCost {
    /// The transcription.
    pub id: Uuid,
    /// `stt_provider_request_id` exactly as it was read ([`PendingCost::request_id`]).
    pub request_id: String,
    /// The cost in USD.
    pub cost: BigDecimal,
}

/// The columns of `transcriptions` that [`store_costs`] and [`record_checks`] write.
pub const WRITTEN_COLUMNS: &[&str] = &[
    "audio_cost_usd",
    "cost_status",
    "cost_error",
    "cost_check_count",
    "cost_checked_at",
    "cost_gave_up_at",
];

/// Stores each cost on its row when the row still has none **and still has the request
/// id it was read with**, in one statement; returns the ids actually updated. An id
/// missing from the answer was priced (or deleted) by someone else since it was read, or
/// its request id changed (the price found belongs to the old request).
pub async fn store_costs(
    conn: &mut AsyncPgConnection,
    costs: &[FoundCost],
) -> Result<Vec<Uuid>, DbError> {
    if costs.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = costs.iter().map(|c| c.id).collect();
    let request_ids: Vec<&str> = costs.iter().map(|c| c.request_id.as_str()).collect();
    let amounts: Vec<BigDecimal> = costs.iter().map(|c| c.cost.clone()).collect();
    index_plan::begin(conn).await?;
    let updated: Result<Vec<UpdatedId>, _> = diesel::sql_query(
        "UPDATE transcriptions t \
         SET audio_cost_usd = v.cost, cost_status = 'priced', cost_error = NULL, \
             cost_checked_at = now() \
         FROM unnest($1::uuid[], $2::text[], $3::numeric[]) AS v(id, request_id, cost) \
         WHERE t.id = v.id AND t.audio_cost_usd IS NULL \
           AND t.stt_provider_request_id = v.request_id \
         RETURNING t.id",
    )
    .bind::<Array<diesel::sql_types::Uuid>, _>(ids)
    .bind::<Array<Text>, _>(request_ids)
    .bind::<Array<Numeric>, _>(amounts)
    .load(conn)
    .await;
    let updated = index_plan::finish(conn, updated).await?;
    Ok(updated.into_iter().map(|row| row.id).collect())
}

/// What [`record_checks`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordedChecks {
    /// Rows updated (rows priced meanwhile are left alone and not counted).
    pub recorded: usize,
    /// Of those, the rows given up on by this call.
    pub gave_up: usize,
}

/// Records on each row the outcome of this run's check (`cost_status`, `cost_error`,
/// `cost_checked_at`), bumps `cost_check_count` where the check counts and sets
/// `cost_gave_up_at` where asked, in one statement. Rows that got a cost meanwhile are
/// left alone.
pub async fn record_checks(
    conn: &mut AsyncPgConnection,
    checks: &[CostCheck],
) -> Result<RecordedChecks, DbError> {
    if checks.is_empty() {
        return Ok(RecordedChecks::default());
    }
    let mut ids = Vec::with_capacity(checks.len());
    let mut request_ids = Vec::with_capacity(checks.len());
    let mut statuses = Vec::with_capacity(checks.len());
    let mut errors = Vec::with_capacity(checks.len());
    let mut increments = Vec::with_capacity(checks.len());
    let mut give_ups = Vec::with_capacity(checks.len());
    for check in checks {
        ids.push(check.id);
        request_ids.push(check.request_id.as_deref());
        statuses.push(check.status.as_str());
        errors.push(check.error.as_deref());
        increments.push(i32::from(check.counted));
        give_ups.push(check.give_up);
    }
    #[derive(diesel::QueryableByName)]
    struct Recorded {
        #[diesel(sql_type = Bool)]
        gave_up: bool,
    }
    index_plan::begin(conn).await?;
    // A row read with a request id too long to load (`NULL` here) was never sent to
    // Deepgram: its check is about the value's form, recorded as long as it is unpriced.
    let recorded: Result<Vec<Recorded>, _> = diesel::sql_query(
        "UPDATE transcriptions t \
         SET cost_status = v.status, cost_error = v.error, cost_checked_at = now(), \
             cost_check_count = t.cost_check_count + v.inc, \
             cost_gave_up_at = CASE WHEN v.give_up THEN now() ELSE t.cost_gave_up_at END \
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int4[], $6::bool[]) \
           AS v(id, request_id, status, error, inc, give_up) \
         WHERE t.id = v.id AND t.audio_cost_usd IS NULL \
           AND (v.request_id IS NULL OR t.stt_provider_request_id = v.request_id) \
         RETURNING v.give_up AS gave_up",
    )
    .bind::<Array<diesel::sql_types::Uuid>, _>(ids)
    .bind::<Array<Nullable<Text>>, _>(request_ids)
    .bind::<Array<Text>, _>(statuses)
    .bind::<Array<Nullable<Text>>, _>(errors)
    .bind::<Array<Integer>, _>(increments)
    .bind::<Array<Bool>, _>(give_ups)
    .load(conn)
    .await;
    let recorded = index_plan::finish(conn, recorded).await?;
    Ok(RecordedChecks {
        recorded: recorded.len(),
        gave_up: recorded.iter().filter(|r| r.gave_up).count(),
    })
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use std::str::FromStr;

    use super::*;
    use crate::testing::TestDatabase;

    async fn insert(conn: &mut AsyncPgConnection, request_id: Option<&str>) -> Uuid {
        diesel::sql_query(
            "INSERT INTO transcriptions (stt_provider_request_id) VALUES ($1) RETURNING id",
        )
        .bind::<Nullable<Text>, _>(request_id)
        .get_result::<UpdatedId>(conn)
        .await
        .expect("insert a transcription")
        .id
    }

    #[derive(diesel::QueryableByName, Debug)]
    struct Stored {
        #[diesel(sql_type = Nullable<Text>)]
        cost: Option<String>,
        #[diesel(sql_type = Nullable<Text>)]
        status: Option<String>,
        #[diesel(sql_type = Integer)]
        checks: i32,
        #[diesel(sql_type = Bool)]
        gave_up: bool,
    }

    async fn stored(conn: &mut AsyncPgConnection, id: Uuid) -> Stored {
        diesel::sql_query(
            "SELECT audio_cost_usd::text AS cost, cost_status AS status, \
             cost_check_count AS checks, cost_gave_up_at IS NOT NULL AS gave_up \
             FROM transcriptions WHERE id = $1",
        )
        .bind::<diesel::sql_types::Uuid, _>(id)
        .get_result(conn)
        .await
        .expect("read a transcription")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pending_batches_page_by_id_and_skip_priced_given_up_and_id_less_rows() {
        let db = TestDatabase::new().await;
        let mut conn = db.connect().await;
        let mut wanted = Vec::new();
        for _ in 0..5 {
            wanted.push(insert(&mut conn, Some("r")).await);
        }
        insert(&mut conn, None).await;
        let priced = insert(&mut conn, Some("r")).await;
        let given_up = insert(&mut conn, Some("r")).await;
        diesel::sql_query("UPDATE transcriptions SET audio_cost_usd = 1 WHERE id = $1")
            .bind::<diesel::sql_types::Uuid, _>(priced)
            .execute(&mut conn)
            .await
            .expect("price");
        diesel::sql_query("UPDATE transcriptions SET cost_gave_up_at = now() WHERE id = $1")
            .bind::<diesel::sql_types::Uuid, _>(given_up)
            .execute(&mut conn)
            .await
            .expect("give up");
        let long = "x".repeat(MAX_REQUEST_ID_CHARS as usize + 1);
        let long_id = insert(&mut conn, Some(&long)).await;
        wanted.push(long_id);
        wanted.sort();

        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let batch = pending_batch(&mut conn, after, 2).await.expect("batch");
            assert!(batch.len() <= 2);
            let Some(last) = batch.last() else { break };
            after = Some(last.id);
            seen.extend(batch);
        }
        assert_eq!(seen.iter().map(|r| r.id).collect::<Vec<_>>(), wanted);
        let long_row = seen.iter().find(|r| r.id == long_id).expect("long row");
        assert_eq!(long_row.request_id, None);
        assert_eq!(long_row.request_id_chars, MAX_REQUEST_ID_CHARS + 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_pending_scan_uses_the_partial_index() {
        let db = TestDatabase::new().await;
        let mut conn = db.connect().await;
        for _ in 0..50 {
            insert(&mut conn, Some("r")).await;
        }
        diesel::sql_query("ANALYZE transcriptions")
            .execute(&mut conn)
            .await
            .expect("analyze");
        diesel::sql_query("SET enable_seqscan = off")
            .execute(&mut conn)
            .await
            .expect("set");
        #[derive(diesel::QueryableByName)]
        struct Plan {
            #[diesel(sql_type = Text)]
            #[diesel(column_name = "QUERY PLAN")]
            line: String,
        }
        let plan: Vec<Plan> = diesel::sql_query(format!("EXPLAIN {}", pending_sql(true)))
            .bind::<diesel::sql_types::Uuid, _>(Uuid::nil())
            .bind::<BigInt, _>(500)
            .load(&mut conn)
            .await
            .expect("explain");
        let plan: Vec<String> = plan.into_iter().map(|p| p.line).collect();
        assert!(
            plan.iter()
                .any(|l| l.contains("idx_transcriptions_cost_pending")),
            "{plan:#?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn costs_are_stored_exactly_and_only_on_rows_still_without_one() {
        let db = TestDatabase::new().await;
        let mut conn = db.connect().await;
        let a = insert(&mut conn, Some("a")).await;
        let b = insert(&mut conn, Some("b")).await;
        diesel::sql_query("UPDATE transcriptions SET audio_cost_usd = 9.5 WHERE id = $1")
            .bind::<diesel::sql_types::Uuid, _>(b)
            .execute(&mut conn)
            .await
            .expect("price b");
        let cost = |s: &str| BigDecimal::from_str(s).expect("decimal");
        let found = |id, request_id: &str, amount: &str| FoundCost {
            id,
            request_id: request_id.to_owned(),
            cost: cost(amount),
        };
        let updated = store_costs(&mut conn, &[found(a, "a", "0.0043"), found(b, "b", "1")])
            .await
            .expect("store");
        assert_eq!(updated, vec![a]);
        assert_eq!(stored(&mut conn, a).await.cost.as_deref(), Some("0.004300"));
        assert_eq!(stored(&mut conn, a).await.status.as_deref(), Some("priced"));
        assert_eq!(stored(&mut conn, b).await.cost.as_deref(), Some("9.500000"));
        assert!(store_costs(&mut conn, &[]).await.expect("empty").is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cost_is_not_stored_on_a_row_whose_request_id_changed_since_it_was_read() {
        let db = TestDatabase::new().await;
        let mut conn = db.connect().await;
        let row = insert(&mut conn, Some("old-request")).await;
        diesel::sql_query(
            "UPDATE transcriptions SET stt_provider_request_id = 'new-request' WHERE id = $1",
        )
        .bind::<diesel::sql_types::Uuid, _>(row)
        .execute(&mut conn)
        .await
        .expect("change the request id");
        let stale = FoundCost {
            id: row,
            request_id: "old-request".to_owned(),
            cost: BigDecimal::from_str("0.5").expect("decimal"),
        };
        assert!(store_costs(&mut conn, &[stale])
            .await
            .expect("store")
            .is_empty());
        let recorded = record_checks(
            &mut conn,
            &[CostCheck {
                id: row,
                request_id: Some("old-request".to_owned()),
                status: "no_price".to_owned(),
                error: None,
                counted: true,
                give_up: true,
            }],
        )
        .await
        .expect("record");
        assert_eq!(recorded.recorded, 0);
        let stored = stored(&mut conn, row).await;
        assert_eq!(
            (stored.cost, stored.checks, stored.gave_up),
            (None, 0, false)
        );

        let current = FoundCost {
            id: row,
            request_id: "new-request".to_owned(),
            cost: BigDecimal::from_str("0.5").expect("decimal"),
        };
        assert_eq!(
            store_costs(&mut conn, &[current]).await.expect("store"),
            vec![row]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn checks_count_give_up_and_leave_priced_rows_alone() {
        let db = TestDatabase::new().await;
        let mut conn = db.connect().await;
        let a = insert(&mut conn, Some("a")).await;
        let b = insert(&mut conn, Some("b")).await;
        let priced = insert(&mut conn, Some("c")).await;
        diesel::sql_query("UPDATE transcriptions SET audio_cost_usd = 2 WHERE id = $1")
            .bind::<diesel::sql_types::Uuid, _>(priced)
            .execute(&mut conn)
            .await
            .expect("price");
        let check = |id, status: &str, counted, give_up| CostCheck {
            id,
            request_id: None,
            status: status.to_owned(),
            error: Some(format!("{status} reason")),
            counted,
            give_up,
        };
        let recorded = record_checks(
            &mut conn,
            &[
                check(a, "no_price", true, false),
                check(b, "unavailable", false, false),
                check(priced, "no_price", true, true),
            ],
        )
        .await
        .expect("record");
        assert_eq!(
            recorded,
            RecordedChecks {
                recorded: 2,
                gave_up: 0
            }
        );
        let recorded = record_checks(&mut conn, &[check(a, "no_price", true, true)])
            .await
            .expect("record");
        assert_eq!(
            recorded,
            RecordedChecks {
                recorded: 1,
                gave_up: 1
            }
        );

        let a = stored(&mut conn, a).await;
        assert_eq!(
            (a.status.as_deref(), a.checks, a.gave_up),
            (Some("no_price"), 2, true)
        );
        let b = stored(&mut conn, b).await;
        assert_eq!(
            (b.status.as_deref(), b.checks, b.gave_up),
            (Some("unavailable"), 0, false)
        );
        let priced = stored(&mut conn, priced).await;
        assert_eq!(
            (priced.status, priced.checks, priced.gave_up),
            (None, 0, false)
        );
    }
}
