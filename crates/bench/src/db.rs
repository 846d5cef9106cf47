//! The throwaway database of a scenario: created on `TEST_DATABASE_URL`'s server, migrated
//! by `api-server migrate`, read through `pg_stat_database`, and dropped at the end (also
//! on error, panic and Ctrl-C, through `Drop`). Databases left by a killed bench are swept
//! at start.

use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};

use crate::error::{bail, Context, Result};

/// The server's maintenance database, named by `TEST_DATABASE_URL`.
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const PREFIX: &str = "bench_";

/// Opens a connection and drives it on its own task.
pub async fn connect(url: &str) -> Result<Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .with_context(|| format!("connecting to {}", redact(url)))?;
    tokio::spawn(async move {
        // The error (server gone) surfaces on the next query of the client.
        let _ = connection.await;
    });
    Ok(client)
}

/// `url` without its password, for messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// A database of one scenario, dropped with this value.
pub struct BenchDb {
    name: String,
    url: String,
    admin_url: String,
    /// A connection to the maintenance database: samplers and `pg_stat_database` reads go
    /// through it, so they never count as the bench database's transactions.
    admin: Client,
    dropped: bool,
}

impl BenchDb {
    /// Creates `bench_<scenario>_<pid>` (empty; see [`BenchDb::url`] for `migrate`).
    pub async fn create(admin_url: &str, scenario: &str) -> Result<Self> {
        let admin = connect(admin_url).await?;
        sweep_leftovers(&admin).await;
        let name = format!("{PREFIX}{scenario}_{}", std::process::id());
        // Two statements: neither may run inside the implicit transaction of a batch.
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await
            .with_context(|| format!("dropping an old database {name}"))?;
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .with_context(|| format!("creating database {name}"))?;
        let mut url = url::Url::parse(admin_url).context("TEST_DATABASE_URL is not a URL")?;
        url.set_path(&format!("/{name}"));
        Ok(Self {
            name,
            url: url.to_string(),
            admin_url: admin_url.to_owned(),
            admin,
            dropped: false,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `postgres://…/bench_…`, for `DATABASE_URL`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A new connection to this database. Close it (drop it) before reading
    /// [`BenchDb::transactions`]: an open session flushes its counters late.
    pub async fn connect(&self) -> Result<Client> {
        connect(&self.url).await
    }

    /// Runs SQL on a connection of its own, closed afterwards.
    pub async fn execute(&self, sql: &str) -> Result<()> {
        let client = self.connect().await?;
        client
            .batch_execute(sql)
            .await
            .with_context(|| format!("running {}", first_line(sql)))?;
        Ok(())
    }

    /// Waits until no session is connected to this database (a finished child's backends
    /// take a moment to exit), so that their counters are in `pg_stat_database`.
    pub async fn wait_idle(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let row = self
                .admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = $1",
                    &[&self.name],
                )
                .await
                .context("reading pg_stat_activity")?;
            let sessions: i64 = row.get(0);
            if sessions == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{sessions} session(s) still connected to {} after 10 s",
                    self.name
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Transactions committed and rolled back in this database so far. With autocommit
    /// (which the jobs use) every Sync of the extended protocol ends one, so a delta counts
    /// SQL round trips: one per prepared statement, two per unprepared one (prepare, then
    /// execute). Call [`BenchDb::wait_idle`] first.
    pub async fn transactions(&self) -> Result<i64> {
        self.admin
            .batch_execute("SELECT pg_stat_clear_snapshot()")
            .await
            .context("clearing the statistics snapshot")?;
        let row = self
            .admin
            .query_one(
                "SELECT (xact_commit + xact_rollback)::int8 FROM pg_stat_database WHERE datname = $1",
                &[&self.name],
            )
            .await
            .context("reading pg_stat_database")?;
        Ok(row.get(0))
    }

    /// Drops the database (its sessions are cut).
    pub async fn drop_now(mut self) -> Result<()> {
        self.dropped = true;
        self.admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ))
            .await
            .with_context(|| format!("dropping database {}", self.name))
    }
}

impl Drop for BenchDb {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        // Error path (or Ctrl-C): `Drop` cannot await, so a short-lived runtime on a thread
        // of its own drops the database.
        let name = self.name.clone();
        let admin_url = self.admin_url.clone();
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                if let Ok((client, connection)) = tokio_postgres::connect(&admin_url, NoTls).await {
                    tokio::spawn(connection);
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

/// Drops `bench_*_<pid>` databases whose bench process is gone.
async fn sweep_leftovers(admin: &Client) {
    let Ok(rows) = admin
        .query(
            "SELECT datname::text FROM pg_database WHERE datname LIKE 'bench\\_%'",
            &[],
        )
        .await
    else {
        return;
    };
    for row in rows {
        let name: String = row.get(0);
        let stale = name
            .rsplit('_')
            .next()
            .and_then(|pid| pid.parse::<u32>().ok())
            .is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists());
        if stale {
            let _ = admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await;
        }
    }
}

fn first_line(sql: &str) -> String {
    let line = sql.trim().lines().next().unwrap_or_default();
    line.chars().take(80).collect()
}
