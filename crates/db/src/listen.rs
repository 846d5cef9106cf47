//! The change feed's receiving end: `LISTEN job_events` on a dedicated connection.
//!
//! The trigger of migration `2026-11-30-170000_change_feed` announces every insert and
//! update of `job_executions` on [`CHANNEL`]; other tables may announce their own kinds on
//! the same channel. A [`Listener`] owns one plain tokio-postgres session (LISTEN needs a
//! session: a transaction-mode pooler hands each statement to another backend, so the
//! notifications never come back) and yields the payloads in the order PostgreSQL sent them.
//! It says nothing about what was missed while it was not connected: whoever uses it must
//! re-read the tables after every (re)connection.

use futures_util::StreamExt;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{AsyncMessage, Socket};

use crate::DbError;

/// The channel the change feed announces on.
pub const CHANNEL: &str = "job_events";

/// The `application_name` of a listener's session, so an operator (or a test) can find it
/// in `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "background-jobs listener";

/// What a notification on [`CHANNEL`] says changed. The payloads are small on purpose:
/// the receiver re-reads the rows.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Change {
    /// An execution was inserted or updated.
    Execution {
        /// Its row id.
        id: i64,
        /// Its job.
        job_name: String,
        /// Its status after the change.
        status: String,
    },
    /// A job's own state (for instance pause/resume) changed.
    Job {
        /// The job.
        job_name: String,
    },
    /// A server checking that notifications reach it through its listener URL.
    Probe {
        /// Chosen by the sender, to recognise its own probe.
        nonce: String,
    },
    /// A kind this version does not know (sent by a newer server): ignored.
    #[serde(other)]
    Unknown,
}

impl Change {
    /// Reads a payload; `None` when it is not JSON of the expected shape.
    pub fn parse(payload: &str) -> Option<Self> {
        serde_json::from_str(payload).ok()
    }

    /// The payload of a probe with `nonce`.
    pub fn probe_payload(nonce: &str) -> String {
        serde_json::json!({"kind": "probe", "nonce": nonce}).to_string()
    }
}

/// A session that has run `LISTEN` on a channel.
pub struct Listener {
    client: tokio_postgres::Client,
    payloads: mpsc::UnboundedReceiver<String>,
    backend_pid: i32,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("backend_pid", &self.backend_pid)
            .finish()
    }
}

impl Listener {
    /// Connects with `config`, drives the connection on a task of its own, and listens on
    /// `channel`.
    pub(crate) async fn start<T>(
        config: &tokio_postgres::Config,
        tls: T,
        channel: &str,
    ) -> Result<Self, DbError>
    where
        T: MakeTlsConnect<Socket>,
        T::Stream: Send + 'static,
    {
        let (client, mut connection) = config
            .connect(tls)
            .await
            .map_err(|e| DbError::Connect(crate::connection::describe_pg_error(&e)))?;
        let (tx, payloads) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            // Polling for messages is also what drives the client's own queries.
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(n)) => {
                        if tx.send(n.payload().to_owned()).is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        log::debug!("listener connection ended: {e}");
                        break;
                    }
                }
            }
            // Dropping `tx` tells the receiver the session is gone.
        });
        let quoted = format!("\"{}\"", channel.replace('"', "\"\""));
        client
            .batch_execute(&format!("LISTEN {quoted}"))
            .await
            .map_err(|e| DbError::Connect(crate::connection::describe_pg_error(&e)))?;
        let backend_pid: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .map_err(|e| DbError::Connect(crate::connection::describe_pg_error(&e)))?
            .get(0);
        Ok(Self {
            client,
            payloads,
            backend_pid,
        })
    }

    /// The next payload, in the order sent; `None` once the session is gone (the server
    /// restarted, the backend was terminated, the network broke).
    pub async fn recv(&mut self) -> Option<String> {
        self.payloads.recv().await
    }

    /// A payload that has already arrived, without waiting.
    pub fn try_recv(&mut self) -> Option<String> {
        self.payloads.try_recv().ok()
    }

    /// One round trip on the session: an error means it is gone, even where the socket has
    /// not said so yet.
    pub async fn ping(&self) -> Result<(), DbError> {
        self.client
            .simple_query("SELECT 1")
            .await
            .map(|_| ())
            .map_err(|e| DbError::Connect(crate::connection::describe_pg_error(&e)))
    }

    /// The PostgreSQL backend serving this session.
    pub fn backend_pid(&self) -> i32 {
        self.backend_pid
    }
}

/// Sends `payload` on [`CHANNEL`] (delivered at commit; here, at once).
pub async fn send(
    conn: &mut diesel_async::AsyncPgConnection,
    payload: &str,
) -> Result<(), DbError> {
    use diesel_async::RunQueryDsl;
    diesel::sql_query("SELECT pg_notify($1, $2)")
        .bind::<diesel::sql_types::Text, _>(CHANNEL)
        .bind::<diesel::sql_types::Text, _>(payload)
        .execute(conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Change;

    #[test]
    fn payloads_of_every_kind_are_read_and_unknown_kinds_are_tolerated() {
        assert_eq!(
            Change::parse(
                r#"{"kind":"execution","id":7,"job_name":"cost_update","status":"running"}"#
            ),
            Some(Change::Execution {
                id: 7,
                job_name: "cost_update".into(),
                status: "running".into()
            })
        );
        assert_eq!(
            Change::parse(r#"{"kind":"job","job_name":"audio_cleanup"}"#),
            Some(Change::Job {
                job_name: "audio_cleanup".into()
            })
        );
        let probe = Change::probe_payload("n1");
        assert_eq!(
            Change::parse(&probe),
            Some(Change::Probe { nonce: "n1".into() })
        );
        assert_eq!(
            Change::parse(r#"{"kind":"worker","worker_id":"a"}"#),
            Some(Change::Unknown)
        );
        assert_eq!(Change::parse("not json"), None);
    }
}
