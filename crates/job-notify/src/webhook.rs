//! Webhook notices: a JSON POST with a Slack-compatible `text` and the details beside it.

use std::time::Duration;

use reqwest::StatusCode;

use super::retry::SendError;
use super::settings::WebhookTarget;

/// Longest part of an error answer's body quoted in the log.
const MAX_BODY_EXCERPT: usize = 200;

/// Posts notices to `ALERT_WEBHOOK_URL`.
#[derive(Debug)]
pub struct WebhookChannel {
    target: WebhookTarget,
    client: reqwest::Client,
}

impl WebhookChannel {
    /// A channel posting to `target`, each attempt bounded by `timeout`.
    pub fn new(target: WebhookTarget, timeout: Duration) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("background-jobs/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self { target, client })
    }

    /// The URL with its path hidden, for log lines.
    pub fn target(&self) -> &WebhookTarget {
        &self.target
    }

    /// One attempt to post `body`. 5xx, 429 and transport errors are transient (429 with
    /// its `Retry-After`); any other non-2xx answer is permanent.
    pub async fn send_once(&self, body: &serde_json::Value) -> Result<(), SendError> {
        let response = self
            .client
            .post(self.target.url().clone())
            .json(body)
            .send()
            .await
            // The URL may be a credential: never let it into a message.
            .map_err(|e| {
                SendError::transient(format!(
                    "posting to {} failed: {}",
                    self.target,
                    error_chain(&e.without_url())
                ))
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(backpressure::parse_retry_after);
        let body = response.text().await.unwrap_or_default();
        let message = format!(
            "{} answered {status}{}",
            self.target,
            excerpt(&self.target.redact(&body))
        );
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            Err(SendError::Transient {
                message,
                retry_after,
            })
        } else {
            Err(SendError::Permanent(message))
        }
    }
}

/// `error sending request: client error (Connect): tcp connect error: Connection refused`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

fn excerpt(body: &str) -> String {
    let body = body.trim();
    if body.is_empty() {
        return String::new();
    }
    let mut end = body.len().min(MAX_BODY_EXCERPT);
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    let more = if end < body.len() { "…" } else { "" };
    format!(": {}{more}", &body[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_bodies_are_quoted_briefly() {
        assert_eq!(excerpt("  "), "");
        assert_eq!(excerpt("no_service"), ": no_service");
        let long = "x".repeat(500);
        assert_eq!(excerpt(&long).len(), 2 + MAX_BODY_EXCERPT + "…".len());
    }
}
