//! Queries of the `audio_cleanup` job over `transcriptions`.
//!
//! The job reads candidates in keyset pages ordered by `(created_at, id)` below a cutoff
//! fixed once per run by the database's clock, so memory stays flat for any backlog and a
//! row left unmarked (bad path, missing bucket, Storage error) is passed over by the page
//! cursor instead of being read again. The partial index
//! `idx_transcriptions_audio_cleanup` serves exactly this scan, and every statement runs
//! with the planner pinned to it (see [`crate::index_plan`]): one index-ordered plan whether
//! the table was analyzed or not, and whether its rows share one `created_at` or not (the
//! cursor is a row comparison on both index columns).
//!
//! The same index serves [`referenced_page`]: the rows *inside* the retention period that
//! still point at audio, whose objects the job must not delete.

use chrono::{DateTime, Utc};
use diesel::sql_types::{Array, BigInt, Integer, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::{index_plan, DbError};

/// A transcription whose audio is due for deletion.
#[derive(Debug, Clone, PartialEq, Eq, diesel::QueryableByName)]
pub struct CleanupCandidate {
    /// The row's id.
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    pub id: Uuid,
    /// When the row was created; with `id`, the page cursor.
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
    /// Where the audio lives, exactly as stored (never `NULL` here).
    #[diesel(sql_type = Text)]
    pub audio_file_path: String,
}

impl CleanupCandidate {
    /// The cursor that continues the scan after this row.
    pub fn cursor(&self) -> PageCursor {
        PageCursor {
            created_at: self.created_at,
            id: self.id,
        }
    }
}

/// Where the next page of [`candidates_page`] starts: just after this `(created_at, id)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageCursor {
    /// `created_at` of the last row read.
    pub created_at: DateTime<Utc>,
    /// `id` of the last row read.
    pub id: Uuid,
}

/// `now() - retention_days` by the database's clock: rows created before it are due.
///
/// Read once at the start of a run and passed to every page, so that the set of rows a run
/// considers does not grow while it runs and servers with skewed clocks agree.
pub async fn retention_cutoff(
    conn: &mut AsyncPgConnection,
    retention_days: i64,
) -> Result<DateTime<Utc>, DbError> {
    #[derive(diesel::QueryableByName)]
    struct Cutoff {
        #[diesel(sql_type = Timestamptz)]
        cutoff: DateTime<Utc>,
    }
    let days = i32::try_from(retention_days).map_err(|_| {
        DbError::Config(format!(
            "retention of {retention_days} days is out of range"
        ))
    })?;
    let row: Cutoff = diesel::sql_query("SELECT now() - make_interval(days => $1) AS cutoff")
        .bind::<Integer, _>(days)
        .get_result(conn)
        .await?;
    Ok(row.cutoff)
}

/// The next page of rows created before `cutoff` that have an audio path and are not
/// marked yet, in `(created_at, id)` order, starting after `after` (from the start when
/// `None`). An empty page means the scan is over.
pub async fn candidates_page(
    conn: &mut AsyncPgConnection,
    cutoff: DateTime<Utc>,
    after: Option<PageCursor>,
    limit: i64,
) -> Result<Vec<CleanupCandidate>, DbError> {
    page(conn, "created_at < $1", cutoff, after, limit).await
}

/// The next page of rows created at or after `cutoff` (inside the retention period) that
/// still point at audio (a path, not marked), in `(created_at, id)` order after `after`.
/// Their objects must not be deleted, whatever older rows say.
pub async fn referenced_page(
    conn: &mut AsyncPgConnection,
    cutoff: DateTime<Utc>,
    after: Option<PageCursor>,
    limit: i64,
) -> Result<Vec<CleanupCandidate>, DbError> {
    page(conn, "created_at >= $1", cutoff, after, limit).await
}

/// One keyset page of the partial index, `bound` being the condition on `created_at`.
async fn page(
    conn: &mut AsyncPgConnection,
    bound: &str,
    cutoff: DateTime<Utc>,
    after: Option<PageCursor>,
    limit: i64,
) -> Result<Vec<CleanupCandidate>, DbError> {
    let base = format!(
        "SELECT id, created_at, audio_file_path FROM transcriptions \
         WHERE audio_deleted_at IS NULL AND audio_file_path IS NOT NULL AND {bound}"
    );
    index_plan::begin(conn).await?;
    let rows = match after {
        None => {
            diesel::sql_query(format!("{base} ORDER BY created_at, id LIMIT $2"))
                .bind::<Timestamptz, _>(cutoff)
                .bind::<BigInt, _>(limit)
                .load(conn)
                .await
        }
        Some(cursor) => {
            diesel::sql_query(format!(
                "{base} AND (created_at, id) > ($3, $4) ORDER BY created_at, id LIMIT $2"
            ))
            .bind::<Timestamptz, _>(cutoff)
            .bind::<BigInt, _>(limit)
            .bind::<Timestamptz, _>(cursor.created_at)
            .bind::<diesel::sql_types::Uuid, _>(cursor.id)
            .load(conn)
            .await
        }
    };
    index_plan::finish(conn, rows).await
}

/// Sets `audio_deleted_at = now()` on the given rows in one statement, and returns how many
/// rows it changed.
///
/// Each row is given with the `audio_file_path` it was read with, and is changed only if
/// it still has that path and is still unmarked: a row whose path the application changed
/// since it was read (a new upload) keeps its new file's claim, and a row marked meanwhile
/// by another run is left alone.
pub async fn mark_audio_deleted<'a>(
    conn: &mut AsyncPgConnection,
    rows: impl IntoIterator<Item = (Uuid, &'a str)>,
) -> Result<usize, DbError> {
    let (ids, paths): (Vec<Uuid>, Vec<&str>) = rows.into_iter().unzip();
    if ids.is_empty() {
        return Ok(0);
    }
    // A mark lost to a crash is redone: the next run finds the row unmarked, Storage
    // answers that its object is gone (the key's delete rights are proven first), and the
    // row is marked then. So the commit need not wait for the disk.
    index_plan::begin_redoable(conn).await?;
    let changed = diesel::sql_query(
        "UPDATE transcriptions AS t SET audio_deleted_at = now() \
         FROM unnest($1::uuid[], $2::text[]) AS m(id, path) \
         WHERE t.id = m.id AND t.audio_file_path = m.path AND t.audio_deleted_at IS NULL",
    )
    .bind::<Array<diesel::sql_types::Uuid>, _>(&ids)
    .bind::<Array<Text>, _>(&paths)
    .execute(conn)
    .await;
    index_plan::finish(conn, changed).await
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use super::*;
    use crate::testing::TestDatabase;
    use diesel_async::SimpleAsyncConnection;

    #[derive(diesel::QueryableByName)]
    struct Plan {
        #[diesel(sql_type = Text)]
        #[diesel(column_name = "QUERY PLAN")]
        line: String,
    }

    /// The plan of the page query after `after`, in the job's pinned transaction.
    async fn page_plan(conn: &mut AsyncPgConnection, after: PageCursor) -> Vec<String> {
        index_plan::begin(conn).await.expect("begin");
        let plan: Result<Vec<Plan>, _> = diesel::sql_query(
            "EXPLAIN SELECT id, created_at, audio_file_path FROM transcriptions \
             WHERE audio_deleted_at IS NULL AND audio_file_path IS NOT NULL AND created_at < $1 \
             AND (created_at, id) > ($3, $4) ORDER BY created_at, id LIMIT $2",
        )
        .bind::<Timestamptz, _>(Utc::now())
        .bind::<BigInt, _>(1000)
        .bind::<Timestamptz, _>(after.created_at)
        .bind::<diesel::sql_types::Uuid, _>(after.id)
        .load(conn)
        .await;
        let plan = index_plan::finish(conn, plan).await.expect("explain");
        plan.into_iter().map(|p| p.line).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pages_of_an_unanalyzed_bulk_loaded_table_are_read_in_index_order_without_a_sort() {
        let db = TestDatabase::new().await;
        let mut conn = db.connect().await;
        // Bulk-loaded, never analyzed (autovacuum off for this table), and half the rows
        // sharing one created_at.
        conn.batch_execute(
            "ALTER TABLE transcriptions SET (autovacuum_enabled = false); \
             INSERT INTO transcriptions (id, created_at, audio_file_path) \
             SELECT gen_random_uuid(), \
                    CASE WHEN i % 2 = 0 THEN timestamptz '2020-01-01' \
                         ELSE timestamptz '2020-01-01' - i * interval '1 second' END, \
                    'audio/u' || i || '.webm' \
             FROM generate_series(1, 50000) AS i",
        )
        .await
        .expect("bulk load");
        let cursor = PageCursor {
            created_at: "2019-01-01T00:00:00Z".parse().expect("time"),
            id: Uuid::nil(),
        };
        let plan = page_plan(&mut conn, cursor).await;
        assert!(
            plan.iter()
                .any(|l| l.contains("Index Scan using idx_transcriptions_audio_cleanup")),
            "{plan:#?}"
        );
        assert!(!plan.iter().any(|l| l.contains("Sort")), "{plan:#?}");
        assert!(!plan.iter().any(|l| l.contains("Bitmap")), "{plan:#?}");

        // The scan through rows sharing one created_at visits each row once.
        let cutoff: DateTime<Utc> = "2021-01-01T00:00:00Z".parse().expect("time");
        let mut after = None;
        let mut seen = 0;
        loop {
            let page = candidates_page(&mut conn, cutoff, after, 7000)
                .await
                .expect("page");
            let Some(last) = page.last() else { break };
            after = Some(last.cursor());
            seen += page.len();
        }
        assert_eq!(seen, 50000);
        // The settings did not outlive the job's transaction.
        #[derive(diesel::QueryableByName)]
        struct Setting {
            #[diesel(sql_type = Text)]
            enable_sort: String,
        }
        let setting: Setting = diesel::sql_query("SHOW enable_sort")
            .get_result(&mut conn)
            .await
            .expect("show");
        assert_eq!(setting.enable_sort, "on");
    }
}
