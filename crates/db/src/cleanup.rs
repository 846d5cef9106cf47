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
//!
//! Each candidate carries where its row version lies in the table ([`RowLocation`], the
//! `ctid`), so that [`mark_audio_deleted`] reaches it directly instead of looking each id
//! up in the primary key again; a row that moved since it was read is found by id.

use std::io::Write;

use chrono::{DateTime, Utc};
use diesel::deserialize::{self, FromSql, FromSqlRow, QueryableByName};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::{Array, BigInt, Integer, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::{index_plan, DbError};

/// PostgreSQL's `tid`: where a row version lies in its table.
#[derive(Debug, Clone, Copy, diesel::sql_types::SqlType, diesel::query_builder::QueryId)]
#[diesel(postgres_type(oid = 27, array_oid = 1010))]
pub struct Tid;

/// A row version's place in the table (its `ctid`): a block and an item in it. It stays
/// valid while the version lives; an update, or a table rewrite, gives the row another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, FromSqlRow, AsExpression)]
#[diesel(sql_type = Tid)]
pub struct RowLocation {
    /// The block number.
    pub block: u32,
    /// The item's number in the block (from 1).
    pub item: u16,
}

impl FromSql<Tid, Pg> for RowLocation {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        // `tidsend`: the block as a 4-byte and the item as a 2-byte integer, big-endian.
        match *value.as_bytes() {
            [b0, b1, b2, b3, i0, i1] => Ok(Self {
                block: u32::from_be_bytes([b0, b1, b2, b3]),
                item: u16::from_be_bytes([i0, i1]),
            }),
            ref other => Err(format!("a tid is 6 bytes, got {}", other.len()).into()),
        }
    }
}

impl ToSql<Tid, Pg> for RowLocation {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        out.write_all(&self.block.to_be_bytes())?;
        out.write_all(&self.item.to_be_bytes())?;
        Ok(IsNull::No)
    }
}

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
    /// Where the row version read lies in the table.
    #[diesel(sql_type = Tid)]
    pub location: RowLocation,
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
    Ok(retention_window(conn, retention_days).await?.cutoff)
}

/// The database's clock at the start of a run, and the retention cutoff read from it.
#[derive(Debug, Clone, Copy, diesel::QueryableByName)]
pub struct RetentionWindow {
    /// `now()`.
    #[diesel(sql_type = Timestamptz)]
    pub now: DateTime<Utc>,
    /// `now() - retention_days`: rows created before it are due.
    #[diesel(sql_type = Timestamptz)]
    pub cutoff: DateTime<Utc>,
}

/// [`retention_cutoff`] with the `now()` it was taken from.
pub async fn retention_window(
    conn: &mut AsyncPgConnection,
    retention_days: i64,
) -> Result<RetentionWindow, DbError> {
    let days = i32::try_from(retention_days).map_err(|_| {
        DbError::Config(format!(
            "retention of {retention_days} days is out of range"
        ))
    })?;
    Ok(
        diesel::sql_query("SELECT now() AS now, now() - make_interval(days => $1) AS cutoff")
            .bind::<Integer, _>(days)
            .get_result(conn)
            .await?,
    )
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

/// What [`referenced_since`] read: rows created at or after the cutoff (inside the
/// retention period) that still point at audio (a path, not marked). Their objects must
/// not be deleted, whatever older rows say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Referenced {
    /// The next rows of the window `cutoff..=upper`, in `(created_at, id)` order.
    pub window: Vec<CleanupCandidate>,
    /// The next rows dated after `upper` (in the future), in the same order.
    pub future: Vec<CleanupCandidate>,
}

#[derive(QueryableByName)]
struct ReferencedRow {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    future: bool,
    #[diesel(embed)]
    row: CleanupCandidate,
}

/// [`referenced_since`]'s statement: `$1` cutoff, `$2` upper, `$3, $4` the window's cursor,
/// `$5, $6` the future's, `$7` the limit of each part.
fn referenced_sql() -> String {
    const ROW: &str = "id, created_at, audio_file_path, ctid AS location FROM transcriptions \
         WHERE audio_deleted_at IS NULL AND audio_file_path IS NOT NULL AND created_at >= $1";
    format!(
        "(SELECT false AS future, {ROW} AND created_at <= $2 AND (created_at, id) > ($3, $4) \
           ORDER BY created_at, id LIMIT $7) \
         UNION ALL \
         (SELECT true AS future, {ROW} AND (created_at, id) > ($5, $6) \
           ORDER BY created_at, id LIMIT $7)"
    )
}

/// One page of each of the two scans of the rows inside the retention period, in one
/// statement (one round trip where two would cost twice): up to `limit` rows of the window
/// from `cutoff` to `upper` after `after` (from its start when `None`), and up to `limit`
/// rows dated after `upper`, after `future` (from `upper` on when `None`). A part shorter
/// than `limit` is that scan's end, for now.
pub async fn referenced_since(
    conn: &mut AsyncPgConnection,
    cutoff: DateTime<Utc>,
    upper: DateTime<Utc>,
    after: Option<PageCursor>,
    future: Option<PageCursor>,
    limit: i64,
) -> Result<Referenced, DbError> {
    // Times are kept to the microsecond: a cursor a microsecond before the cutoff is the
    // window's start, and one at `upper` with the greatest id is the future's.
    let after = after.unwrap_or(PageCursor {
        created_at: cutoff - chrono::Duration::microseconds(1),
        id: Uuid::nil(),
    });
    let future = future.unwrap_or(PageCursor {
        created_at: upper,
        id: Uuid::from_u128(u128::MAX),
    });
    index_plan::begin(conn).await?;
    let rows = diesel::sql_query(referenced_sql())
        .bind::<Timestamptz, _>(cutoff)
        .bind::<Timestamptz, _>(upper)
        .bind::<Timestamptz, _>(after.created_at)
        .bind::<diesel::sql_types::Uuid, _>(after.id)
        .bind::<Timestamptz, _>(future.created_at)
        .bind::<diesel::sql_types::Uuid, _>(future.id)
        .bind::<BigInt, _>(limit)
        .load::<ReferencedRow>(conn)
        .await;
    let rows = index_plan::finish(conn, rows).await?;
    let mut read = Referenced::default();
    for ReferencedRow { future, row } in rows {
        if future {
            read.future.push(row);
        } else {
            read.window.push(row);
        }
    }
    Ok(read)
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
        "SELECT id, created_at, audio_file_path, ctid AS location FROM transcriptions \
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

/// Sets `audio_deleted_at = now()` on the given rows, and returns how many rows it
/// changed.
///
/// Each row is changed only if it still has the `audio_file_path` it was read with and is
/// still unmarked: a row whose path the application changed since it was read (a new
/// upload) keeps its new file's claim, and a row marked meanwhile by another run is left
/// alone. The rows are reached by the [`RowLocation`] they were read at; those that moved
/// since (any update gives a row a new location) are then looked up by id, in the same
/// transaction.
pub async fn mark_audio_deleted<'a>(
    conn: &mut AsyncPgConnection,
    rows: impl IntoIterator<Item = &'a CleanupCandidate>,
) -> Result<usize, DbError> {
    let mut locations = Vec::new();
    let mut ids = Vec::new();
    let mut paths = Vec::new();
    for row in rows {
        locations.push(row.location);
        ids.push(row.id);
        paths.push(row.audio_file_path.as_str());
    }
    if ids.is_empty() {
        return Ok(0);
    }
    // A mark lost to a crash is redone: the next run finds the row unmarked, Storage
    // answers that its object is gone (the key's delete rights are proven first), and the
    // row is marked then. So the commit need not wait for the disk.
    index_plan::begin_redoable(conn).await?;
    let changed = mark(conn, &locations, &ids, &paths).await;
    index_plan::finish(conn, changed).await
}

/// Marks the rows still at the locations they were read at (`$1`), with their ids (`$2`)
/// and paths (`$3`): a nested loop of `Tid Scan`s under the pinned plan.
const MARK_IN_PLACE: &str = "UPDATE transcriptions AS t SET audio_deleted_at = now() \
     FROM unnest($1::tid[], $2::uuid[], $3::text[]) AS m(location, id, path) \
     WHERE t.ctid = m.location AND t.id = m.id AND t.audio_file_path = m.path \
     AND t.audio_deleted_at IS NULL";

async fn mark(
    conn: &mut AsyncPgConnection,
    locations: &[RowLocation],
    ids: &[Uuid],
    paths: &[&str],
) -> Result<usize, diesel::result::Error> {
    let in_place = diesel::sql_query(MARK_IN_PLACE)
        .bind::<Array<Tid>, _>(locations)
        .bind::<Array<diesel::sql_types::Uuid>, _>(ids)
        .bind::<Array<Text>, _>(paths)
        .execute(conn)
        .await?;
    if in_place == ids.len() {
        return Ok(in_place);
    }
    // Some rows moved, or no longer qualify: the rest by id (the rows just marked no
    // longer match `audio_deleted_at IS NULL`).
    let moved = diesel::sql_query(
        "UPDATE transcriptions AS t SET audio_deleted_at = now() \
         FROM unnest($1::uuid[], $2::text[]) AS m(id, path) \
         WHERE t.id = m.id AND t.audio_file_path = m.path AND t.audio_deleted_at IS NULL",
    )
    .bind::<Array<diesel::sql_types::Uuid>, _>(ids)
    .bind::<Array<Text>, _>(paths)
    .execute(conn)
    .await?;
    Ok(in_place + moved)
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

        // The marking reaches each row where it was read, without a scan or a sort.
        index_plan::begin_redoable(&mut conn).await.expect("begin");
        let plan: Result<Vec<Plan>, _> = diesel::sql_query(format!("EXPLAIN {MARK_IN_PLACE}"))
            .bind::<Array<Tid>, _>(vec![RowLocation { block: 0, item: 1 }])
            .bind::<Array<diesel::sql_types::Uuid>, _>(vec![Uuid::nil()])
            .bind::<Array<Text>, _>(vec!["audio/u1.webm"])
            .load(&mut conn)
            .await;
        let plan = index_plan::finish(&mut conn, plan).await.expect("explain");
        let plan: Vec<String> = plan.into_iter().map(|p| p.line).collect();
        assert!(plan.iter().any(|l| l.contains("Tid Scan")), "{plan:#?}");
        assert!(!plan.iter().any(|l| l.contains("Seq Scan")), "{plan:#?}");
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_newer_rows_are_read_in_index_order_in_both_parts_and_at_their_bounds() {
        let db = TestDatabase::new().await;
        let mut conn = db.connect().await;
        let cutoff: DateTime<Utc> = "2020-01-01T00:00:00Z".parse().expect("time");
        let upper: DateTime<Utc> = "2020-02-01T00:00:00Z".parse().expect("time");
        // Never analyzed; 20 000 rows in the window sharing one created_at, and rows at
        // each bound: a microsecond before the cutoff (out), at it, at `upper` (the
        // window's), a microsecond after it (the future's), and one marked.
        conn.batch_execute(
            "ALTER TABLE transcriptions SET (autovacuum_enabled = false); \
             INSERT INTO transcriptions (id, created_at, audio_file_path) \
             SELECT gen_random_uuid(), timestamptz '2020-01-15', 'audio/w' || i || '.webm' \
             FROM generate_series(1, 20000) AS i; \
             INSERT INTO transcriptions (created_at, audio_file_path, audio_deleted_at) VALUES \
               (timestamptz '2020-01-01' - interval '1 microsecond', 'audio/before.webm', NULL), \
               (timestamptz '2020-01-01', 'audio/at-cutoff.webm', NULL), \
               (timestamptz '2020-02-01', 'audio/at-upper.webm', NULL), \
               (timestamptz '2020-02-01' + interval '1 microsecond', 'audio/future.webm', NULL), \
               (timestamptz '2020-01-20', 'audio/marked.webm', now())",
        )
        .await
        .expect("bulk load");

        index_plan::begin(&mut conn).await.expect("begin");
        let plan: Result<Vec<Plan>, _> = diesel::sql_query(format!("EXPLAIN {}", referenced_sql()))
            .bind::<Timestamptz, _>(cutoff)
            .bind::<Timestamptz, _>(upper)
            .bind::<Timestamptz, _>(cutoff)
            .bind::<diesel::sql_types::Uuid, _>(Uuid::nil())
            .bind::<Timestamptz, _>(upper)
            .bind::<diesel::sql_types::Uuid, _>(Uuid::max())
            .bind::<BigInt, _>(1000)
            .load(&mut conn)
            .await;
        let plan = index_plan::finish(&mut conn, plan).await.expect("explain");
        let plan: Vec<String> = plan.into_iter().map(|p| p.line).collect();
        let index_scans = plan
            .iter()
            .filter(|l| l.contains("Index Scan using idx_transcriptions_audio_cleanup"))
            .count();
        assert_eq!(index_scans, 2, "{plan:#?}");
        assert!(!plan.iter().any(|l| l.contains("Sort")), "{plan:#?}");
        assert!(!plan.iter().any(|l| l.contains("Bitmap")), "{plan:#?}");

        // Paged by 7000: every window row once, in order, and the future row once.
        let (mut after, mut future) = (None, None);
        let (mut window, mut later) = (Vec::new(), Vec::new());
        loop {
            let read = referenced_since(&mut conn, cutoff, upper, after, future, 7000)
                .await
                .expect("read");
            let more = read.window.len() >= 7000 || read.future.len() >= 7000;
            if let Some(last) = read.window.last() {
                after = Some(last.cursor());
            }
            if let Some(last) = read.future.last() {
                future = Some(last.cursor());
            }
            window.extend(read.window);
            later.extend(read.future);
            if !more {
                break;
            }
        }
        assert_eq!(window.len(), 20002);
        assert!(window
            .windows(2)
            .all(|w| (w[0].created_at, w[0].id) < (w[1].created_at, w[1].id)));
        assert_eq!(window[0].audio_file_path, "audio/at-cutoff.webm");
        assert_eq!(window[20001].audio_file_path, "audio/at-upper.webm");
        let later: Vec<&str> = later.iter().map(|r| r.audio_file_path.as_str()).collect();
        assert_eq!(later, ["audio/future.webm"]);
        // Read again from the cursors: nothing new.
        let again = referenced_since(&mut conn, cutoff, upper, after, future, 7000)
            .await
            .expect("read");
        assert_eq!(again, Referenced::default());
    }

    /// Rows of `(path)` created long ago, in insertion order.
    async fn old_rows(conn: &mut AsyncPgConnection, paths: &[&str]) -> Vec<CleanupCandidate> {
        for path in paths {
            diesel::sql_query(
                "INSERT INTO transcriptions (created_at, audio_file_path) \
                 VALUES (now() - interval '40 days', $1)",
            )
            .bind::<Text, _>(*path)
            .execute(conn)
            .await
            .expect("insert");
        }
        let cutoff = retention_cutoff(conn, 30).await.expect("cutoff");
        candidates_page(conn, cutoff, None, 100)
            .await
            .expect("page")
    }

    async fn marked(conn: &mut AsyncPgConnection) -> Vec<String> {
        #[derive(diesel::QueryableByName)]
        struct Path {
            #[diesel(sql_type = Text)]
            audio_file_path: String,
        }
        let rows: Vec<Path> = diesel::sql_query(
            "SELECT audio_file_path FROM transcriptions WHERE audio_deleted_at IS NOT NULL \
             ORDER BY audio_file_path",
        )
        .load(conn)
        .await
        .expect("marked");
        rows.into_iter().map(|p| p.audio_file_path).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rows_read_are_found_again_at_their_location() {
        let db = TestDatabase::new().await;
        let mut conn = db.connect().await;
        let rows = old_rows(&mut conn, &["c/1.webm", "c/2.webm", "c/3.webm"]).await;
        let locations: Vec<RowLocation> = rows.iter().map(|r| r.location).collect();
        let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
        let paths: Vec<&str> = rows.iter().map(|r| r.audio_file_path.as_str()).collect();

        // The in-place statement alone, without the look-up by id behind it: the
        // locations read come back as the same `tid`s.
        let changed = diesel::sql_query(MARK_IN_PLACE)
            .bind::<Array<Tid>, _>(&locations)
            .bind::<Array<diesel::sql_types::Uuid>, _>(&ids)
            .bind::<Array<Text>, _>(&paths)
            .execute(&mut conn)
            .await
            .expect("mark in place");

        assert_eq!(changed, 3);
        assert_eq!(
            marked(&mut conn).await,
            ["c/1.webm", "c/2.webm", "c/3.webm"]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rows_that_moved_since_they_were_read_are_marked_by_id() {
        let db = TestDatabase::new().await;
        let mut conn = db.connect().await;
        let rows = old_rows(&mut conn, &["a/1.webm", "a/2.webm", "a/3.webm", "a/4.webm"]).await;
        assert_eq!(rows.len(), 4);
        // Row 2 is updated in a column the job does not look at: a new version, elsewhere.
        // Row 3 gets a new upload. Row 4 is marked by someone else.
        conn.batch_execute(
            "UPDATE transcriptions SET cost_status = 'pending' WHERE audio_file_path = 'a/2.webm'; \
             UPDATE transcriptions SET audio_file_path = 'a/3-new.webm' WHERE audio_file_path = 'a/3.webm'; \
             UPDATE transcriptions SET audio_deleted_at = now() WHERE audio_file_path = 'a/4.webm'",
        )
        .await
        .expect("updates");
        let moved = candidates_page(&mut conn, Utc::now(), None, 100)
            .await
            .expect("page");
        let before = rows
            .iter()
            .find(|r| r.audio_file_path == "a/2.webm")
            .expect("row 2");
        let after = moved
            .iter()
            .find(|r| r.id == before.id)
            .expect("row 2 again");
        assert_ne!(after.location, before.location, "an update moves a row");

        let changed = mark_audio_deleted(&mut conn, &rows).await.expect("mark");

        assert_eq!(changed, 2);
        assert_eq!(
            marked(&mut conn).await,
            ["a/1.webm", "a/2.webm", "a/4.webm"]
        );
        // Marking again changes nothing.
        assert_eq!(
            mark_audio_deleted(&mut conn, &rows).await.expect("again"),
            0
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_location_now_holding_another_row_marks_only_the_row_read() {
        let db = TestDatabase::new().await;
        let mut conn = db.connect().await;
        let rows = old_rows(&mut conn, &["b/1.webm", "b/2.webm"]).await;
        let by_path = |path: &str| {
            rows.iter()
                .find(|r| r.audio_file_path == path)
                .cloned()
                .expect("row")
        };
        // Row 1 as read before a table rewrite put row 2 where row 1 was.
        let mut stale = by_path("b/1.webm");
        stale.location = by_path("b/2.webm").location;

        let changed = mark_audio_deleted(&mut conn, [&stale]).await.expect("mark");

        assert_eq!(changed, 1);
        assert_eq!(marked(&mut conn).await, ["b/1.webm"]);
    }
}
