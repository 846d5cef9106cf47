//! Wiring: from a [`Config`] to a pool, a registry and a runner.

use std::sync::Arc;
use std::time::Duration;

use db::{ConnectTarget, PgExecutionLog};
use job_notify::Notifier;
use jobs_core::{Registry, Runner, RunnerSettings, SchedulerSettings};
use secrecy::ExposeSecret;

use crate::config::{Config, ConfigError};
use crate::jobs;
use crate::live::{feed, ListenUrl, LiveView};

/// Longest statement on the execution log's connections.
const LOG_STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for one execution-log call (a connection from its pool included).
const LOG_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections of the live view's re-reads and the server's presence row.
const LIVE_POOL_SIZE: usize = 2;

/// What every command builds from the configuration, before touching the database.
pub struct Services {
    /// The configuration.
    pub config: Arc<Config>,
    /// Where the database is.
    pub target: ConnectTarget,
    /// A pool on it (connections open lazily), for the API and the jobs.
    pub pool: db::Pool,
    /// A small pool of its own for the execution log (claims, heartbeats, completions),
    /// so that no load on the API can delay a run's lease renewal.
    pub log_pool: db::Pool,
    /// Two connections of their own for the live view's re-reads and this server's row in
    /// the servers list, so that a burst of slow API requests holding every connection of
    /// `pool` cannot hold back what every other server's pages show.
    pub live_pool: db::Pool,
    /// The jobs.
    pub registry: Arc<Registry>,
}

impl Services {
    /// Validates everything that can be validated without the database.
    pub fn prepare(config: Config) -> Result<Self, ConfigError> {
        let target = ConnectTarget::parse(config.database_url.expose_secret())
            .map_err(|e| ConfigError::new("DATABASE_URL", e.to_string()))?;
        let pool = target
            .with_statement_timeout(config.statement_timeout)
            .pool(config.pool_size)
            .map_err(|e| ConfigError::new("DATABASE_POOL_SIZE", e.to_string()))?;
        // Execution-log statements are small; one that takes longer than this is stuck.
        let log_statement_timeout = if config.statement_timeout.is_zero() {
            LOG_STATEMENT_TIMEOUT
        } else {
            config.statement_timeout.min(LOG_STATEMENT_TIMEOUT)
        };
        let log_pool = target
            .with_statement_timeout(log_statement_timeout)
            .pool(config.log_pool_size)
            .map_err(|e| ConfigError::new("DATABASE_LOG_POOL_SIZE", e.to_string()))?;
        let live_pool = target
            .with_statement_timeout(LOG_STATEMENT_TIMEOUT)
            .pool(LIVE_POOL_SIZE)
            .map_err(|e| ConfigError::new("DATABASE_URL", e.to_string()))?;
        let registry = Arc::new(jobs::build_registry(&config, &pool)?);
        // The jobs' settings are read by now.
        config.vars.check_readable()?;
        for (name, known) in config.vars.lookalikes() {
            log::warn!(
                "{name} is not a setting of this service and is ignored; did you mean {known}?"
            );
        }
        Ok(Self {
            config: Arc::new(config),
            target,
            pool,
            log_pool,
            live_pool,
            registry,
        })
    }

    /// Creates the database when missing and applies pending migrations.
    pub async fn migrate(&self) -> Result<Vec<String>, db::DbError> {
        db::ensure_database(&self.target).await?;
        let applied = db::run_migrations(&self.target).await?;
        for version in &applied {
            log::info!("applied migration {version}");
        }
        Ok(applied)
    }

    /// A runner recording into this database as `worker_id`, counting executions in the
    /// metrics.
    pub fn runner(&self, worker_id: String) -> Arc<Runner> {
        self.runner_with(worker_id, None)
    }

    /// The failure notifier of this configuration; `None` when no channel is configured
    /// (neither `SMTP_URL` & co. nor `ALERT_WEBHOOK_URL`).
    pub fn notifier(&self) -> Option<Arc<Notifier>> {
        Notifier::new(
            &self.config.notify,
            self.config.public_url.as_ref(),
            self.pool.clone(),
        )
    }

    /// The same, also telling `notifier` about every execution that ends.
    pub fn runner_with(&self, worker_id: String, notifier: Option<Arc<Notifier>>) -> Arc<Runner> {
        let scheduling = &self.config.scheduling;
        let log =
            Arc::new(PgExecutionLog::new(self.log_pool.clone()).unleased_grace(scheduling.lease));
        // Installs the recorder before the first execution is counted.
        crate::http::metrics::handle();
        Arc::new(
            Runner::new(
                log,
                RunnerSettings {
                    worker_id,
                    lease: scheduling.lease,
                    heartbeat_interval: scheduling.heartbeat,
                    progress_interval: std::time::Duration::from_secs(1).min(scheduling.heartbeat),
                    cancel_grace: scheduling.cancel_grace,
                    log_timeout: LOG_CALL_TIMEOUT,
                },
            )
            .with_observer(Arc::new(crate::http::metrics::MetricsObserver))
            .with_observers(notifier.map(|n| n as Arc<dyn jobs_core::RunObserver>)),
        )
    }

    /// The live view of this database, empty, and the feed that loads it and keeps it
    /// current once run.
    pub fn live_view(&self) -> Result<(Arc<LiveView>, feed::Feed), db::DbError> {
        // Through a transaction-mode pooler a LISTEN session would be handed to another
        // client after its first statement: poll unless a session address is given.
        let pooled = self.target.transaction_pooling();
        let listen = match &self.config.live.listen_url {
            ListenUrl::Database if pooled => None,
            ListenUrl::Database => Some(self.target.clone()),
            ListenUrl::Url(url) => Some(ConnectTarget::parse(url.expose_secret())?),
            ListenUrl::Off => None,
        };
        let view = LiveView::new(Arc::clone(&self.registry), self.config.live.clone());
        let feed = feed::Feed::new(
            Arc::clone(&view),
            self.live_pool.clone(),
            listen,
            pooled && matches!(self.config.live.listen_url, ListenUrl::Database),
        );
        Ok((view, feed))
    }

    /// The scheduler's settings.
    pub fn scheduler_settings(&self) -> SchedulerSettings {
        let scheduling = &self.config.scheduling;
        SchedulerSettings {
            tick: scheduling.tick,
            misfire_window: scheduling.misfire_window,
            lease_check_interval: (scheduling.lease / 4).max(scheduling.tick),
        }
    }
}
