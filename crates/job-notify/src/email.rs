//! E-mail notices over SMTP (lettre on tokio, rustls for `smtps://` and STARTTLS).

use std::time::Duration;

use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::sync::OnceCell;

use super::message::Notice;
use super::retry::SendError;
use super::settings::{EmailSettings, SmtpTarget};

/// Sends notices as multipart/alternative (plain text and HTML) e-mails.
pub struct EmailChannel {
    target: SmtpTarget,
    from: Mailbox,
    to: Vec<Mailbox>,
    timeout: Duration,
    /// Built on first use, inside the runtime (lettre's connection pool spawns a task).
    transport: OnceCell<AsyncSmtpTransport<Tokio1Executor>>,
}

impl std::fmt::Debug for EmailChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailChannel")
            .field("smtp", &self.target)
            .field("recipients", &self.to.len())
            .finish()
    }
}

impl EmailChannel {
    /// A channel to the configured server and recipients; each SMTP exchange is bounded by
    /// `timeout`.
    pub fn new(settings: &EmailSettings, timeout: Duration) -> Self {
        Self {
            target: settings.smtp.clone(),
            from: settings.from.clone(),
            to: settings.to.clone(),
            timeout,
            transport: OnceCell::new(),
        }
    }

    /// The server, password hidden, for log lines.
    pub fn target(&self) -> &SmtpTarget {
        &self.target
    }

    /// How many recipients each notice goes to.
    pub fn recipients(&self) -> usize {
        self.to.len()
    }

    /// The e-mail of a notice, with a new Message-ID.
    pub fn message(&self, notice: &Notice) -> Result<Message, SendError> {
        let id = self.new_message_id();
        self.message_from(&notice.subject(), notice.plain_text(), notice.html(), &id)
    }

    /// A Message-ID on the sender's domain: `<uuid@domain>`.
    pub fn new_message_id(&self) -> String {
        let domain = self.from.email.domain();
        let domain = if domain.is_empty() {
            "localhost"
        } else {
            domain
        };
        format!("<{}@{domain}>", uuid::Uuid::new_v4())
    }

    /// An e-mail as stored in the outbox. Every copy of a notice carries its one
    /// Message-ID: a relay that kept the message but whose answer was lost gets it again,
    /// and readers' mail tools fold the copies.
    pub fn message_from(
        &self,
        subject: &str,
        plain_text: String,
        html: String,
        message_id: &str,
    ) -> Result<Message, SendError> {
        let mut builder = Message::builder()
            .message_id(Some(message_id.to_owned()))
            .from(self.from.clone())
            .subject(subject)
            // RFC 3834: tells auto-responders (vacation replies) not to answer.
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("Auto-Submitted"),
                "auto-generated".to_owned(),
            ));
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        builder
            .multipart(MultiPart::alternative_plain_html(plain_text, html))
            .map_err(|e| SendError::Permanent(format!("cannot build the e-mail: {e}")))
    }

    async fn transport(&self) -> Result<&AsyncSmtpTransport<Tokio1Executor>, SendError> {
        self.transport
            .get_or_try_init(|| async {
                AsyncSmtpTransport::<Tokio1Executor>::from_url(self.target.url())
                    .map(|builder| {
                        builder
                            .timeout(Some(self.timeout))
                            // No connection reuse: notices are rare (an idle connection
                            // would be dead by the next one), and an attempt abandoned
                            // on timeout must not leave a half-used connection behind.
                            .pool_config(PoolConfig::new().max_size(0))
                            .build()
                    })
                    .map_err(|e| SendError::Permanent(format!("SMTP_URL is unusable: {e}")))
            })
            .await
    }

    /// One attempt to send an e-mail, bounded by the send timeout as a whole (lettre's own
    /// timeout covers only connecting, not a server that accepts and then stays silent).
    pub async fn send_once(&self, message: &Message) -> Result<(), SendError> {
        let transport = self.transport().await?;
        let raw = message.formatted();
        let exchange = transport.send_raw(message.envelope(), &raw);
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok(_)) => Ok(()),
            // The server's reply is quoted: it may echo what AUTH sent.
            Ok(Err(e)) if e.is_permanent() => Err(SendError::Permanent(format!(
                "{} refused the e-mail: {}",
                self.target,
                self.target.redact(&e.to_string())
            ))),
            Ok(Err(e)) => Err(SendError::transient(format!(
                "sending through {} failed: {}",
                self.target,
                self.target.redact(&e.to_string())
            ))),
            Err(_) => Err(SendError::transient(format!(
                "{} did not complete the exchange within {:?} (the message may have been \
                 delivered all the same; its copies share one Message-ID)",
                self.target, self.timeout
            ))),
        }
    }
}
