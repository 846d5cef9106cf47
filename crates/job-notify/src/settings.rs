//! What the notifier is built from: the [`NotifySettings`] types, their defaults, and the
//! checks of the values that only this crate understands (SMTP URLs, e-mail addresses).
//! The server's config module reads the variables and fills these in.

use std::time::Duration;

use lettre::message::{Mailbox, Mailboxes};
use lettre::{AsyncSmtpTransport, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};

/// Default multiple of a job's interval without a success after which it is overdue.
pub const DEFAULT_OVERDUE_FACTOR: f64 = 2.0;
/// Default period of the overdue check.
pub const DEFAULT_OVERDUE_CHECK_SECS: u64 = 300;
/// Default period between reminders while a job stays broken.
pub const DEFAULT_REMINDER_HOURS: u64 = 24;
/// Default limit of one delivery attempt.
pub const DEFAULT_SEND_TIMEOUT_SECS: u64 = 10;
/// Default number of delivery attempts per notice and channel.
pub const DEFAULT_SEND_ATTEMPTS: u32 = 3;
/// Default delay before the second attempt; doubled for each further one.
pub const DEFAULT_RETRY_DELAY_MS: u64 = 1_000;
/// The smallest overdue factor: below it, a run that merely takes a little longer than the
/// previous one would count as overdue.
pub const MIN_OVERDUE_FACTOR: f64 = 1.5;
/// The largest overdue factor.
pub const MAX_OVERDUE_FACTOR: f64 = 1_000.0;

/// Everything the notifier reads from the environment.
#[derive(Debug, Clone)]
pub struct NotifySettings {
    /// E-mail over SMTP (`SMTP_URL`, `ALERT_EMAIL_FROM`, `ALERT_EMAIL_TO`).
    pub email: Option<EmailSettings>,
    /// The webhook (`ALERT_WEBHOOK_URL`).
    pub webhook: Option<WebhookTarget>,
    /// `ALERT_OVERDUE_FACTOR`: a job is overdue when it has not succeeded for this many of
    /// its intervals.
    pub overdue_factor: f64,
    /// `ALERT_OVERDUE_CHECK_SECS`: how often the overdue watch looks.
    pub overdue_check_interval: Duration,
    /// `ALERT_REMINDER_HOURS`: a reminder while a job stays broken, at most this often;
    /// `None` (`0`) for never.
    pub reminder_interval: Option<Duration>,
    /// `ALERT_SEND_TIMEOUT_SECS`: limit of one delivery attempt (SMTP: of each exchange).
    pub send_timeout: Duration,
    /// `ALERT_SEND_ATTEMPTS`: attempts per notice and channel on transient failures.
    pub send_attempts: u32,
    /// `ALERT_RETRY_DELAY_MS`: delay before the second attempt, doubled for each further.
    pub retry_delay: Duration,
}

impl Default for NotifySettings {
    /// No channel, default tunables.
    fn default() -> Self {
        Self {
            email: None,
            webhook: None,
            overdue_factor: DEFAULT_OVERDUE_FACTOR,
            overdue_check_interval: Duration::from_secs(DEFAULT_OVERDUE_CHECK_SECS),
            reminder_interval: Some(Duration::from_secs(DEFAULT_REMINDER_HOURS * 3_600)),
            send_timeout: Duration::from_secs(DEFAULT_SEND_TIMEOUT_SECS),
            send_attempts: DEFAULT_SEND_ATTEMPTS,
            retry_delay: Duration::from_millis(DEFAULT_RETRY_DELAY_MS),
        }
    }
}

impl NotifySettings {
    /// How long a sender's claim on a notice lasts: longer than a whole delivery pass
    /// (every attempt timing out, with the waits between), plus a margin. After it, any
    /// server sends the notice again.
    pub fn delivery_claim(&self) -> Duration {
        (self.send_timeout + self.retry_delay) * self.send_attempts.max(1) * 2
            + Duration::from_secs(30)
    }

    /// True when at least one channel is configured.
    pub fn is_enabled(&self) -> bool {
        self.email.is_some() || self.webhook.is_some()
    }
}

/// Where and to whom failure e-mails go.
#[derive(Debug, Clone)]
pub struct EmailSettings {
    /// `SMTP_URL`.
    pub smtp: SmtpTarget,
    /// `ALERT_EMAIL_FROM`.
    pub from: Mailbox,
    /// `ALERT_EMAIL_TO` (at least one).
    pub to: Vec<Mailbox>,
}

/// Which of the three e-mail values is wrong, and why (never repeating a password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EmailSettingsError {
    /// `SMTP_URL`.
    #[error("{0}")]
    SmtpUrl(String),
    /// `ALERT_EMAIL_FROM`.
    #[error("{0}")]
    From(String),
    /// `ALERT_EMAIL_TO`.
    #[error("{0}")]
    To(String),
}

impl EmailSettingsError {
    /// The variable the wrong value came from.
    pub fn variable(&self) -> &'static str {
        match self {
            Self::SmtpUrl(_) => "SMTP_URL",
            Self::From(_) => "ALERT_EMAIL_FROM",
            Self::To(_) => "ALERT_EMAIL_TO",
        }
    }
}

impl EmailSettings {
    /// Checks the SMTP URL (see [`SmtpTarget::parse`]), the sender and the comma-separated
    /// recipients (at least one).
    pub fn parse(smtp_url: &str, from: &str, to: &str) -> Result<Self, EmailSettingsError> {
        let smtp = SmtpTarget::parse(smtp_url).map_err(EmailSettingsError::SmtpUrl)?;
        let sender: Mailbox = from.parse().map_err(|e| {
            EmailSettingsError::From(format!(
                "{from:?} is not an e-mail address such as jobs@example.com ({e})"
            ))
        })?;
        let recipients: Vec<Mailbox> = to
            .parse::<Mailboxes>()
            .map_err(|e| {
                EmailSettingsError::To(format!(
                    "{to:?} is not a comma-separated list of e-mail addresses such as \
                     ops@example.com, oncall@example.com ({e})"
                ))
            })?
            .into_iter()
            .collect();
        if recipients.is_empty() {
            return Err(EmailSettingsError::To(
                "must name at least one address".to_owned(),
            ));
        }
        Ok(Self {
            smtp,
            from: sender,
            to: recipients,
        })
    }
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// `smtp://`: plain text (a relay on the local network, a test sink).
    None,
    /// `smtp://…?tls=opportunistic`: STARTTLS when the server offers it.
    Opportunistic,
    /// `smtp://…?tls=required`: STARTTLS, refused without it.
    StartTls,
    /// `smtps://`: TLS from the first byte.
    Tls,
}

/// A parsed `SMTP_URL`. `Debug` and `Display` hide the password.
#[derive(Clone)]
pub struct SmtpTarget {
    /// The whole URL, password included; only [`SmtpTarget::url`] hands it out.
    url: SecretString,
    host: String,
    /// The host is this machine (`localhost`, `127.0.0.0/8`, `::1`).
    loopback: bool,
    port: u16,
    security: SmtpSecurity,
    user: Option<String>,
}

impl SmtpTarget {
    /// Reads `smtp://host[:port]`, `smtp://host[:port]?tls=required|opportunistic` or
    /// `smtps://user:password@host[:port]`. The error never repeats the value (it may hold
    /// a password).
    pub fn parse(raw: &str) -> Result<Self, String> {
        const FORMS: &str = "smtp://host:port, smtp://user:password@host:port?tls=required \
                             or smtps://user:password@host[:port]";
        let url =
            url::Url::parse(raw).map_err(|e| format!("is not a URL ({e}); expected {FORMS}"))?;
        let tls = url
            .query_pairs()
            .find(|(k, _)| k == "tls")
            .map(|(_, v)| v.into_owned());
        let security = match (url.scheme(), tls.as_deref()) {
            ("smtp", None) => SmtpSecurity::None,
            ("smtp", Some("required")) => SmtpSecurity::StartTls,
            ("smtp", Some("opportunistic")) => SmtpSecurity::Opportunistic,
            ("smtp", Some(other)) => {
                return Err(format!(
                    "tls={other:?} is not understood: use tls=required or tls=opportunistic"
                ))
            }
            ("smtps", _) => SmtpSecurity::Tls,
            (scheme, _) => return Err(format!("unknown scheme {scheme:?}: expected {FORMS}")),
        };
        // `smtp` is not a scheme the URL standard knows, so an IPv4 address arrives as a
        // name.
        let loopback = match url.host() {
            Some(url::Host::Domain(name)) => match name.parse::<std::net::IpAddr>() {
                Ok(ip) => ip.is_loopback(),
                Err(_) => {
                    let name = name.trim_end_matches('.').to_ascii_lowercase();
                    name == "localhost" || name.ends_with(".localhost")
                }
            },
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("has no host; expected {FORMS}"))?
            .to_owned();
        let port = url.port().unwrap_or(match security {
            SmtpSecurity::None => 25,
            SmtpSecurity::Opportunistic | SmtpSecurity::StartTls => 587,
            SmtpSecurity::Tls => 465,
        });
        let user = (!url.username().is_empty()).then(|| url.username().to_owned());
        match (&user, url.password()) {
            (Some(_), None) => return Err("has a user name but no password".to_owned()),
            (None, Some(_)) => return Err("has a password but no user name".to_owned()),
            _ => {}
        }
        // lettre reads the URL itself when the transport is built; make sure it will.
        AsyncSmtpTransport::<Tokio1Executor>::from_url(raw)
            .map_err(|e| format!("cannot be used for SMTP: {e}"))?;
        Ok(Self {
            url: SecretString::from(raw),
            host,
            loopback,
            port,
            security,
            user,
        })
    }

    /// The server's host name.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The server's port (the scheme's default when the URL names none).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// How the connection is secured.
    pub fn security(&self) -> SmtpSecurity {
        self.security
    }

    /// True when a user name and password would cross the network without TLS: the
    /// host is not this machine and the URL is plain `smtp://` (or
    /// `?tls=opportunistic`, which falls back to plain text when the server offers no
    /// STARTTLS). Still allowed, as relays inside a private network often have no TLS;
    /// the notifier warns about it once when it starts.
    pub fn sends_credentials_in_clear(&self) -> bool {
        self.user.is_some()
            && !self.loopback
            && matches!(
                self.security,
                SmtpSecurity::None | SmtpSecurity::Opportunistic
            )
    }

    /// The URL with its password, for the one place that connects.
    pub(crate) fn url(&self) -> &str {
        self.url.expose_secret()
    }

    /// `text` (a server's reply, quoted in a log line) without the password, in any form
    /// it crossed the network: as typed, and inside AUTH PLAIN's or AUTH LOGIN's base64.
    pub(crate) fn redact(&self, text: &str) -> String {
        use base64::Engine;
        let Ok(url) = url::Url::parse(self.url()) else {
            return text.to_owned();
        };
        let decode = |raw: &str| {
            percent_encoding::percent_decode_str(raw)
                .decode_utf8_lossy()
                .into_owned()
        };
        let (user, password) = (decode(url.username()), decode(url.password().unwrap_or("")));
        if password.is_empty() {
            return text.to_owned();
        }
        let b64 = base64::engine::general_purpose::STANDARD;
        let secrets = vec![
            b64.encode(format!("\0{user}\0{password}")),
            b64.encode(format!("{user}\0{password}")),
            b64.encode(&password),
            url.password().unwrap_or("").to_owned(),
            password,
        ];
        redact_all(text, secrets)
    }
}

/// `text` with each of `secrets` (the longest first) replaced by `***`.
fn redact_all(text: &str, mut secrets: Vec<String>) -> String {
    secrets.retain(|s| !s.is_empty());
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets.dedup();
    let mut out = text.to_owned();
    for secret in &secrets {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), "***");
        }
    }
    out
}

impl std::fmt::Display for SmtpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.security == SmtpSecurity::Tls {
            "smtps"
        } else {
            "smtp"
        };
        write!(f, "{scheme}://")?;
        if let Some(user) = &self.user {
            write!(f, "{user}:***@")?;
        }
        write!(f, "{}:{}", self.host, self.port)?;
        match self.security {
            SmtpSecurity::StartTls => write!(f, "?tls=required"),
            SmtpSecurity::Opportunistic => write!(f, "?tls=opportunistic"),
            SmtpSecurity::None | SmtpSecurity::Tls => Ok(()),
        }
    }
}

impl std::fmt::Debug for SmtpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SmtpTarget({self})")
    }
}

/// The `ALERT_WEBHOOK_URL`. Such URLs are often credentials themselves (a Slack incoming
/// webhook's path is its secret), so `Debug` and `Display` show only scheme and host.
#[derive(Clone)]
pub struct WebhookTarget(pub url::Url);

impl WebhookTarget {
    /// The whole URL, for the one place that posts to it.
    pub fn url(&self) -> &url::Url {
        &self.0
    }

    /// `text` (the receiver's answer, quoted in a log line) without what `Display` hides:
    /// the path and query as sent, and each longer piece of them (a path segment of 6
    /// characters or more, a query value of 4 or more), should the receiver echo them.
    pub fn redact(&self, text: &str) -> String {
        let url = &self.0;
        let mut secrets = vec![
            url[url::Position::BeforePath..url::Position::AfterQuery].to_owned(),
            url.path().to_owned(),
            url.query().unwrap_or("").to_owned(),
        ];
        if let Some(segments) = url.path_segments() {
            secrets.extend(segments.filter(|s| s.len() >= 6).map(str::to_owned));
        }
        for (_, value) in url.query_pairs() {
            if value.len() >= 4 {
                secrets.push(value.into_owned());
            }
        }
        if let Some(query) = url.query() {
            secrets.extend(
                query
                    .split('&')
                    .filter_map(|pair| pair.split_once('=').map(|(_, v)| v))
                    .filter(|v| v.len() >= 4)
                    .map(str::to_owned),
            );
        }
        // A path of "/" alone hides nothing; replacing every slash would garble the text.
        secrets.retain(|s| s.len() > 1);
        redact_all(text, secrets)
    }
}

impl std::fmt::Display for WebhookTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}://{}",
            self.0.scheme(),
            self.0.host_str().unwrap_or("")
        )?;
        if let Some(port) = self.0.port() {
            write!(f, ":{port}")?;
        }
        f.write_str("/***")
    }
}

impl std::fmt::Debug for WebhookTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WebhookTarget({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email(smtp_url: &str) -> Result<EmailSettings, EmailSettingsError> {
        EmailSettings::parse(
            smtp_url,
            "Jobs <jobs@example.com>",
            "ops@example.com, Oncall <oncall@example.com>",
        )
    }

    #[test]
    fn email_settings_read_sender_and_every_recipient() {
        let email = email("smtp://127.0.0.1:2525").unwrap();
        assert_eq!(email.smtp.host(), "127.0.0.1");
        assert_eq!(email.smtp.port(), 2525);
        assert_eq!(email.smtp.security(), SmtpSecurity::None);
        assert_eq!(email.from.email.to_string(), "jobs@example.com");
        let to: Vec<String> = email.to.iter().map(|m| m.email.to_string()).collect();
        assert_eq!(to, ["ops@example.com", "oncall@example.com"]);
    }

    #[test]
    fn smtp_urls_of_every_form_are_understood() {
        let cases = [
            ("smtp://relay.local", 25, SmtpSecurity::None),
            (
                "smtp://u:p@mail.example.com?tls=required",
                587,
                SmtpSecurity::StartTls,
            ),
            (
                "smtp://mail.example.com:2587?tls=opportunistic",
                2587,
                SmtpSecurity::Opportunistic,
            ),
            ("smtps://u:p@mail.example.com", 465, SmtpSecurity::Tls),
            ("smtps://u:p@mail.example.com:1465", 1465, SmtpSecurity::Tls),
        ];
        for (url, port, security) in cases {
            let t = SmtpTarget::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!((t.port(), t.security()), (port, security), "{url}");
        }
    }

    #[test]
    fn each_bad_value_says_which_one_it_is() {
        let smtp = |url| EmailSettings::parse(url, "jobs@example.com", "ops@example.com");
        for url in [
            "not a url",
            "http://mail.example.com",
            "smtp://mail.example.com?tls=sometimes",
            "smtps://user@mail.example.com",
        ] {
            assert!(
                matches!(smtp(url), Err(EmailSettingsError::SmtpUrl(_))),
                "{url}"
            );
        }
        let from = EmailSettings::parse("smtp://relay.local", "jobs-at-example.com", "ops@x.com");
        assert!(matches!(from, Err(EmailSettingsError::From(_))), "{from:?}");
        for to in ["ops@example.com, nobody", ","] {
            let e = EmailSettings::parse("smtp://relay.local", "jobs@example.com", to);
            assert!(matches!(e, Err(EmailSettingsError::To(_))), "{to}: {e:?}");
        }
    }

    #[test]
    fn credentials_in_clear_to_another_host_are_flagged() {
        let cases = [
            ("smtp://u:p@mail.example.com", true),
            ("smtp://u:p@10.0.0.5:25?tls=opportunistic", true),
            ("smtp://mail.example.com", false),
            ("smtp://u:p@mail.example.com?tls=required", false),
            ("smtps://u:p@mail.example.com", false),
            ("smtp://u:p@localhost:2525", false),
            ("smtp://u:p@127.0.0.1:2525", false),
            ("smtp://u:p@127.0.0.2:2525", false),
            ("smtp://u:p@10.0.0.5:2525", true),
            ("smtp://u:p@[::1]:2525", false),
        ];
        for (url, flagged) in cases {
            let t = SmtpTarget::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(t.sends_credentials_in_clear(), flagged, "{url}");
        }
    }

    #[test]
    fn passwords_and_webhook_paths_never_show() {
        let email = EmailSettings::parse(
            "smtps://mailer:hunter2-smtp@mail.example.com",
            "jobs@example.com",
            "ops@example.com",
        )
        .unwrap();
        let webhook = WebhookTarget(
            url::Url::parse("https://hooks.slack.com/services/T000/B000/sekret-token").unwrap(),
        );
        let debug = format!("{email:?} {webhook:?} {webhook}");
        assert!(!debug.contains("hunter2-smtp"), "{debug}");
        assert!(!debug.contains("sekret-token"), "{debug}");
        assert!(
            debug.contains("smtps://mailer:***@mail.example.com:465"),
            "{debug}"
        );
        assert!(debug.contains("https://hooks.slack.com/***"), "{debug}");

        let e = SmtpTarget::parse("ftp://u:hunter2-smtp@mail.example.com").unwrap_err();
        assert!(!e.contains("hunter2-smtp"), "{e}");
    }

    #[test]
    fn a_reply_that_echoes_the_credentials_is_quoted_without_them() {
        // A server that echoes AUTH back: PLAIN's and LOGIN's base64, and the password as
        // typed (percent-encoded in the URL, decoded on the wire).
        let smtp = email("smtp://smtpuser:SmtpPw%2FSecret3390@127.0.0.1:2525")
            .unwrap()
            .smtp;
        let reply = "535 5.7.8 AHNtdHB1c2VyAFNtdHBQdy9TZWNyZXQzMzkw rejected; \
                     LOGIN U210cFB3L1NlY3JldDMzOTA=; you said SmtpPw/Secret3390 (SmtpPw%2FSecret3390)";
        let quoted = smtp.redact(reply);
        assert_eq!(
            quoted,
            "535 5.7.8 *** rejected; LOGIN ***; you said *** (***)"
        );
        // Without a password there is nothing to hide.
        let open = email("smtp://127.0.0.1:2525").unwrap().smtp;
        assert_eq!(open.redact(reply), reply);

        let webhook = WebhookTarget(
            url::Url::parse(
                "http://127.0.0.1:18250/hook/HookPathSecret1177?token=HookQuerySecret2288&v=1",
            )
            .unwrap(),
        );
        let echo = r#"{"path": "/hook/HookPathSecret1177?token=HookQuerySecret2288&v=1",
            "escaped": "\/hook\/HookPathSecret1177", "args": {"token": "HookQuerySecret2288"}}"#;
        let quoted = webhook.redact(echo);
        assert!(!quoted.contains("HookPathSecret"), "{quoted}");
        assert!(!quoted.contains("HookQuerySecret"), "{quoted}");
        assert!(quoted.contains(r#""path": "***""#), "{quoted}");
        // Short pieces stay: they are no secret, and hiding them would garble the text.
        assert!(
            quoted.contains(r#""token": "***""#) && quoted.contains("\\/hook"),
            "{quoted}"
        );
        let root = WebhookTarget(url::Url::parse("https://example.com/").unwrap());
        assert_eq!(root.redact("a/b/c"), "a/b/c");
    }
}
