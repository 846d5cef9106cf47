//! Whether this connection's role can do a job's writes on `transcriptions`, asked of the
//! server before a run does anything it could not take back.
//!
//! A role with the right to read but not to update would have `audio_cleanup` delete the
//! audio and then fail to mark its rows; row-level security would show a job only the rows
//! its policies allow, and the job would report the rest as done.

use diesel::sql_types::{Array, Bool, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::DbError;

/// Why the role cannot update `columns` of `public.transcriptions` on every row, in words
/// naming the role and what to grant; `None` when it can.
pub async fn transcriptions_write_problem(
    conn: &mut AsyncPgConnection,
    columns: &[&str],
) -> Result<Option<String>, DbError> {
    #[derive(diesel::QueryableByName)]
    struct Access {
        #[diesel(sql_type = Text)]
        role: String,
        #[diesel(sql_type = Array<Text>)]
        missing: Vec<String>,
        #[diesel(sql_type = Bool)]
        hidden_rows: bool,
    }
    let access: Access = diesel::sql_query(
        "SELECT current_user::text AS role, \
                array(SELECT c FROM unnest($1::text[]) AS c \
                      WHERE NOT has_column_privilege('public.transcriptions', c, 'UPDATE')) \
                  AS missing, \
                row_security_active('public.transcriptions') AS hidden_rows",
    )
    .bind::<Array<Text>, _>(columns)
    .get_result(conn)
    .await?;
    let role = access.role;
    if !access.missing.is_empty() {
        let missing = access.missing.join(", ");
        return Ok(Some(format!(
            "role {role} may not update {missing} of public.transcriptions, so the rows \
             could not be recorded; grant it: GRANT UPDATE ({missing}) ON \
             public.transcriptions TO {role}"
        )));
    }
    if access.hidden_rows {
        return Ok(Some(format!(
            "row-level security on public.transcriptions applies to role {role}: the job \
             would see only the rows its policies show and take the rest for done; run it \
             as a role with BYPASSRLS, or as the table's owner (without FORCE ROW LEVEL \
             SECURITY)"
        )));
    }
    Ok(None)
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use super::*;
    use crate::testing::TestDatabase;
    use diesel_async::{AsyncConnection, SimpleAsyncConnection};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_role_that_cannot_update_or_sees_through_policies_is_named() {
        let db = TestDatabase::new().await;
        let mut owner = db.connect().await;
        assert_eq!(
            transcriptions_write_problem(&mut owner, &["audio_deleted_at"])
                .await
                .unwrap(),
            None
        );
        // Roles are per cluster: named after the test database.
        let role = format!("{}_reader", db.name());
        owner
            .batch_execute(&format!(
                "CREATE ROLE \"{role}\" LOGIN; \
                 GRANT SELECT ON public.transcriptions TO \"{role}\"; \
                 GRANT UPDATE (audio_cost_usd) ON public.transcriptions TO \"{role}\""
            ))
            .await
            .unwrap();
        let url = db.url().replacen("://postgres@", &format!("://{role}@"), 1);
        let checks = async {
            let mut reader = AsyncPgConnection::establish(&url).await.unwrap();
            let cannot =
                transcriptions_write_problem(&mut reader, &["audio_cost_usd", "audio_deleted_at"])
                    .await
                    .unwrap();
            let can = transcriptions_write_problem(&mut reader, &["audio_cost_usd"])
                .await
                .unwrap();
            owner
                .batch_execute(&format!(
                    "GRANT UPDATE ON public.transcriptions TO \"{role}\"; \
                     ALTER TABLE public.transcriptions ENABLE ROW LEVEL SECURITY; \
                     CREATE POLICY own_rows ON public.transcriptions USING (false)"
                ))
                .await
                .unwrap();
            let hidden = transcriptions_write_problem(&mut reader, &["audio_deleted_at"])
                .await
                .unwrap();
            (cannot, can, hidden)
        }
        .await;
        owner
            .batch_execute(&format!(
                "DROP POLICY own_rows ON public.transcriptions; \
                 DROP OWNED BY \"{role}\"; DROP ROLE \"{role}\""
            ))
            .await
            .unwrap();
        let (cannot, can, hidden) = checks;
        let cannot = cannot.expect("audio_deleted_at is not granted");
        assert!(
            cannot.contains(&format!("role {role} may not update audio_deleted_at")),
            "{cannot}"
        );
        assert!(
            cannot.contains("GRANT UPDATE (audio_deleted_at)"),
            "{cannot}"
        );
        assert_eq!(can, None);
        let hidden = hidden.expect("row-level security applies");
        assert!(hidden.contains("row-level security"), "{hidden}");
        // The owner is not subject to its own table's policies.
        assert_eq!(
            transcriptions_write_problem(&mut owner, &["audio_deleted_at"])
                .await
                .unwrap(),
            None
        );
    }
}
