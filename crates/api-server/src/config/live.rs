//! The live view's variables (see the table in [`crate::config`]), read into
//! [`LiveSettings`].

use secrecy::SecretString;

use super::{ConfigError, Vars};
use crate::live::{self, ListenUrl, LiveSettings};

/// Reads `DATABASE_LISTEN_URL`, `LIVE_RESYNC_SECS`, `EVENTS_MAX_STREAMS` and
/// `EVENTS_HEARTBEAT_SECS`.
pub fn live_settings(vars: &Vars) -> Result<LiveSettings, ConfigError> {
    const VAR: &str = "DATABASE_LISTEN_URL";
    let listen_url = match vars.get(VAR) {
        None => ListenUrl::Database,
        Some(v) if v.eq_ignore_ascii_case("off") => ListenUrl::Off,
        Some(url) => {
            db::ConnectTarget::parse(url).map_err(|e| {
                // The parser names DATABASE_URL; this one is read the same way.
                ConfigError::new(VAR, e.to_string().replace("DATABASE_URL", VAR))
            })?;
            ListenUrl::Url(SecretString::from(url))
        }
    };
    Ok(LiveSettings {
        listen_url,
        resync: vars.secs("LIVE_RESYNC_SECS", live::DEFAULT_RESYNC_SECS, 1, 3_600)?,
        max_streams: vars.int_in("EVENTS_MAX_STREAMS", live::DEFAULT_MAX_STREAMS, 0, 100_000)?,
        heartbeat: vars.secs(
            "EVENTS_HEARTBEAT_SECS",
            live::DEFAULT_HEARTBEAT_SECS,
            1,
            300,
        )?,
    })
}
