//! Connecting to PostgreSQL, with TLS as libpq does it: `sslmode=prefer` (also the
//! default when the URL says nothing) encrypts whenever the server offers TLS and falls
//! back to plaintext only when it does not; `require`, `verify-ca` and `verify-full` insist
//! on TLS and verify the certificate (rustls); `disable` and `allow` connect in plaintext.
//! A plaintext connection to a host other than this machine is logged as a warning, once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once};
use std::time::Duration;

use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::AsyncPgConnection;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use url::Url;

use crate::pooler::UnnamedStatements;
use crate::DbError;

/// A byte stream to the server: TCP, a Unix socket, or TLS over TCP.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

/// A pool of async connections.
pub type Pool = diesel_async::pooled_connection::deadpool::Pool<AsyncPgConnection>;
/// A connection checked out of a [`Pool`].
pub type PooledConnection = diesel_async::pooled_connection::deadpool::Object<AsyncPgConnection>;

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A parsed `DATABASE_URL`: where to connect and whether over TLS.
#[derive(Clone)]
pub struct ConnectTarget {
    config: tokio_postgres::Config,
    tls: Option<Arc<rustls::ClientConfig>>,
    database: String,
    /// Shared by clones, so that a plaintext connection is warned about once.
    plaintext_warning: Arc<Once>,
    transaction_pooling: bool,
}

impl std::fmt::Debug for ConnectTarget {
    /// Prints host, port, database and TLS, never the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectTarget")
            .field("hosts", &self.config.get_hosts())
            .field("ports", &self.config.get_ports())
            .field("database", &self.database)
            .field("tls", &self.tls.is_some())
            .field("tls_required", &self.uses_tls())
            .field("transaction_pooling", &self.transaction_pooling)
            .finish()
    }
}

impl ConnectTarget {
    /// Reads a `postgres://` URL. `sslmode=require`, `verify-ca` and `verify-full` connect
    /// over TLS and verify the server's certificate against the bundled web PKI roots plus
    /// the PEM file named by `sslrootcert`, if any. `prefer` (the default) asks for TLS and
    /// uses it when the server agrees, without verifying the certificate (as libpq does:
    /// it protects against eavesdropping, not impersonation); `disable` and `allow` do not
    /// ask.
    pub fn parse(database_url: &str) -> Result<Self, DbError> {
        let mut url = Url::parse(database_url)
            .map_err(|e| DbError::Config(format!("DATABASE_URL is not a valid URL: {e}")))?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(DbError::Config(format!(
                "DATABASE_URL must start with postgres:// or postgresql://, not {}://",
                url.scheme()
            )));
        }
        let mut ssl_mode = String::from("prefer");
        let mut root_cert: Option<String> = None;
        let mut pgbouncer: Option<String> = None;
        let mut kept: Vec<(String, String)> = Vec::new();
        for (k, v) in url.query_pairs() {
            match k.as_ref() {
                "sslmode" => ssl_mode = v.into_owned(),
                "sslrootcert" => root_cert = Some(v.into_owned()),
                "pgbouncer" => pgbouncer = Some(v.into_owned()),
                _ => kept.push((k.into_owned(), v.into_owned())),
            }
        }
        let transaction_pooling = match pgbouncer.as_deref() {
            Some("true" | "1") => true,
            Some("false" | "0") => false,
            Some(other) => {
                return Err(DbError::Config(format!(
                    "DATABASE_URL has pgbouncer={other:?}; use pgbouncer=true for a transaction-mode pooler or pgbouncer=false"
                )))
            }
            None => is_supabase_transaction_pooler(&url),
        };
        // The other parameters go on exactly as written: libpq (and tokio-postgres) read
        // `%20` as a space and `+` as a plus, where re-encoding them as a form would turn
        // `options=-c%20lock_timeout%3D10s` into `-c+lock_timeout=10s`.
        let raw_kept: Vec<String> = url
            .query()
            .unwrap_or_default()
            .split('&')
            .filter(|pair| {
                url::form_urlencoded::parse(pair.as_bytes())
                    .next()
                    .is_some_and(|(key, _)| kept.iter().any(|(k, _)| *k == key))
            })
            .map(str::to_owned)
            .collect();
        url.set_query(None);
        if !raw_kept.is_empty() {
            url.set_query(Some(&raw_kept.join("&")));
        }
        let mut config: tokio_postgres::Config = url
            .as_str()
            .parse()
            .map_err(|e| DbError::Config(format!("DATABASE_URL is not usable: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("background-jobs");
        }
        // A half-open connection (a server or network gone without a FIN) is found within
        // about a minute instead of the kernel's two hours; statements and log calls have
        // their own, shorter limits on top.
        config
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30))
            .keepalives_interval(Duration::from_secs(10))
            .keepalives_retries(3);
        let tls = match ssl_mode.as_str() {
            "require" | "verify-ca" | "verify-full" => {
                config.ssl_mode(SslMode::Require);
                Some(Arc::new(tls_config(root_cert.as_deref())?))
            }
            "prefer" => {
                config.ssl_mode(SslMode::Prefer);
                Some(Arc::new(unverified_tls_config()?))
            }
            "disable" | "allow" => {
                config.ssl_mode(SslMode::Disable);
                None
            }
            other => {
                return Err(DbError::Config(format!(
                    "DATABASE_URL has an unknown sslmode {other:?} (use disable, prefer, require, verify-ca or verify-full)"
                )))
            }
        };
        let database = config
            .get_dbname()
            .map(str::to_owned)
            .or_else(|| config.get_user().map(str::to_owned))
            .unwrap_or_else(|| "postgres".to_owned());
        Ok(Self {
            config,
            tls,
            database,
            plaintext_warning: Arc::new(Once::new()),
            transaction_pooling,
        })
    }

    /// True when the URL leads through a transaction-mode pooler (`?pgbouncer=true`, or
    /// Supabase's pooler on port 6543), where each round trip outside a transaction may run
    /// on another server connection. Connections then send every statement unnamed, parsed
    /// in the round trip that runs it ([`crate::pooler`]), and carry no per-connection
    /// settings (see [`Self::with_statement_timeout`]).
    pub fn transaction_pooling(&self) -> bool {
        self.transaction_pooling
    }

    /// The database name.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// `host:port/database`, for logs: never the user or password.
    pub fn address(&self) -> String {
        let host = match self.config.get_hosts().first() {
            Some(Host::Tcp(name)) => name.clone(),
            #[cfg(unix)]
            Some(Host::Unix(path)) => path.display().to_string(),
            None => "localhost".to_owned(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!("{host}:{port}/{}", self.database)
    }

    /// True when connections must use TLS (`sslmode=require` or stricter); with `prefer`
    /// the server decides.
    pub fn uses_tls(&self) -> bool {
        self.config.get_ssl_mode() == SslMode::Require
    }

    /// True when every host is this machine (a loopback name or address, or a Unix
    /// socket), where plaintext crosses no network.
    pub fn is_loopback(&self) -> bool {
        let hosts_local = self.config.get_hosts().iter().all(|host| match host {
            Host::Tcp(name) => {
                name.eq_ignore_ascii_case("localhost")
                    || name
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
            #[cfg(unix)]
            Host::Unix(_) => true,
        });
        hosts_local
            && self
                .config
                .get_hostaddrs()
                .iter()
                .all(std::net::IpAddr::is_loopback)
    }

    /// The same target whose connections cancel any statement running longer than
    /// `timeout` (PostgreSQL's `statement_timeout`; zero means no limit). Pools use it;
    /// migrations connect without it.
    ///
    /// Through a transaction-mode pooler it is not set: such a pooler cannot carry a
    /// connection's settings (PgBouncer refuses the `options` startup parameter unless told
    /// to ignore it), so there the role's own `statement_timeout` applies
    /// (`ALTER ROLE … SET statement_timeout`).
    pub fn with_statement_timeout(&self, timeout: Duration) -> Self {
        let mut other = self.clone();
        if self.transaction_pooling {
            return other;
        }
        let setting = format!("-c statement_timeout={}", timeout.as_millis());
        let options = match self.config.get_options() {
            Some(existing) if !existing.trim().is_empty() => format!("{existing} {setting}"),
            _ => setting,
        };
        other.config.options(options);
        other
    }

    /// The same server, another database.
    pub fn with_database(&self, database: &str) -> Self {
        let mut other = self.clone();
        other.config.dbname(database);
        other.database = database.to_owned();
        other
    }

    /// Opens one connection.
    pub async fn connect(&self) -> Result<AsyncPgConnection, DbError> {
        let (connection, encrypted) = if self.transaction_pooling {
            self.connect_through_pooler().await?
        } else {
            self.connect_direct().await?
        };
        self.warn_if_plaintext(encrypted);
        Ok(connection)
    }

    /// A connection whose socket and TLS tokio-postgres sets up itself.
    async fn connect_direct(&self) -> Result<(AsyncPgConnection, bool), DbError> {
        let encrypted = Arc::new(AtomicBool::new(false));
        let result = match &self.tls {
            Some(tls) => {
                let connector = NoteHandshake {
                    inner: tokio_postgres_rustls::MakeRustlsConnect::new((**tls).clone()),
                    done: Arc::clone(&encrypted),
                };
                let (client, connection) = self
                    .config
                    .connect(connector)
                    .await
                    .map_err(|e| connect_error(&e))?;
                AsyncPgConnection::try_from_client_and_connection(client, connection).await
            }
            None => {
                let (client, connection) = self
                    .config
                    .connect(tokio_postgres::NoTls)
                    .await
                    .map_err(|e| connect_error(&e))?;
                AsyncPgConnection::try_from_client_and_connection(client, connection).await
            }
        };
        let connection = result.map_err(|e| DbError::Connect(e.to_string()))?;
        Ok((connection, encrypted.load(Ordering::Relaxed)))
    }

    /// A connection through a transaction-mode pooler: the socket and TLS are set up here,
    /// so that [`UnnamedStatements`] can sit between them and tokio-postgres and keep every
    /// statement within the round trip that runs it (see [`crate::pooler`]).
    async fn connect_through_pooler(&self) -> Result<(AsyncPgConnection, bool), DbError> {
        let timeout = self
            .config
            .get_connect_timeout()
            .copied()
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let attempt = async {
            let (socket, host) = self.open_socket().await?;
            let (stream, encrypted) = self.negotiate_tls(socket, &host).await?;
            let mut config = self.config.clone();
            config.ssl_mode(SslMode::Disable);
            let (client, connection) = config
                .connect_raw(UnnamedStatements::new(stream), tokio_postgres::NoTls)
                .await
                .map_err(|e| connect_error(&e))?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    log::debug!("[Db] a pooler connection ended: {e}");
                }
            });
            let connection = AsyncPgConnection::try_from(client)
                .await
                .map_err(|e| DbError::Connect(e.to_string()))?;
            Ok((connection, encrypted))
        };
        tokio::time::timeout(timeout, attempt).await.map_err(|_| {
            DbError::Connect(format!(
                "no connection to {} within {} s",
                self.address(),
                timeout.as_secs()
            ))
        })?
    }

    /// The first of the URL's hosts that accepts a connection, and its name (for TLS).
    async fn open_socket(&self) -> Result<(Box<dyn Stream>, String), DbError> {
        let hosts = self.config.get_hosts();
        let ports = self.config.get_ports();
        let addrs = self.config.get_hostaddrs();
        let mut last_error = String::from("DATABASE_URL names no host");
        for (i, host) in hosts.iter().enumerate() {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            let opened: std::io::Result<(Box<dyn Stream>, String)> = match host {
                Host::Tcp(name) => {
                    let stream = match addrs.get(i) {
                        Some(ip) => tokio::net::TcpStream::connect((*ip, port)).await,
                        None => tokio::net::TcpStream::connect((name.as_str(), port)).await,
                    };
                    stream.and_then(|tcp| {
                        tcp.set_nodelay(true)?;
                        // The keepalives `parse` set for direct connections.
                        let mut keepalive = socket2::TcpKeepalive::new()
                            .with_time(self.config.get_keepalives_idle());
                        if let Some(interval) = self.config.get_keepalives_interval() {
                            keepalive = keepalive.with_interval(interval);
                        }
                        if let Some(retries) = self.config.get_keepalives_retries() {
                            keepalive = keepalive.with_retries(retries);
                        }
                        socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive)?;
                        Ok((Box::new(tcp) as Box<dyn Stream>, name.clone()))
                    })
                }
                #[cfg(unix)]
                Host::Unix(dir) => {
                    tokio::net::UnixStream::connect(dir.join(format!(".s.PGSQL.{port}")))
                        .await
                        .map(|unix| (Box::new(unix) as Box<dyn Stream>, String::new()))
                }
            };
            match opened {
                Ok(opened) => return Ok(opened),
                Err(e) => last_error = format!("cannot connect to the database server: {e}"),
            }
        }
        Err(DbError::Connect(last_error))
    }

    /// Asks for TLS as `sslmode` says (never on a Unix socket) and sets it up.
    async fn negotiate_tls(
        &self,
        mut socket: Box<dyn Stream>,
        host: &str,
    ) -> Result<(Box<dyn Stream>, bool), DbError> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        use tokio_postgres::tls::MakeTlsConnect;

        let Some(tls) = self.tls.as_ref().filter(|_| !host.is_empty()) else {
            return Ok((socket, false));
        };
        let io_error = |e: std::io::Error| DbError::Connect(format!("TLS negotiation: {e}"));
        // SSLRequest: length 8, code 80877103.
        socket
            .write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
            .await
            .map_err(io_error)?;
        let mut answer = [0u8];
        socket.read_exact(&mut answer).await.map_err(io_error)?;
        match answer[0] {
            b'S' => {
                let mut make = tokio_postgres_rustls::MakeRustlsConnect::new((**tls).clone());
                let connect = MakeTlsConnect::<Box<dyn Stream>>::make_tls_connect(&mut make, host)
                    .map_err(|e| DbError::Connect(format!("TLS setup for {host}: {e}")))?;
                let stream = tokio_postgres::tls::TlsConnect::connect(connect, socket)
                    .await
                    .map_err(|e| DbError::Connect(format!("TLS handshake with {host}: {e}")))?;
                Ok((Box::new(stream), true))
            }
            b'N' if self.config.get_ssl_mode() != SslMode::Require => Ok((socket, false)),
            b'N' => Err(DbError::Connect(format!(
                "{host} does not offer TLS, and DATABASE_URL's sslmode requires it"
            ))),
            other => Err(DbError::Connect(format!(
                "{host} answered the TLS request with {other:#04x}: is it a PostgreSQL server or pooler?"
            ))),
        }
    }

    fn warn_if_plaintext(&self, encrypted: bool) {
        if !encrypted && !self.is_loopback() {
            self.plaintext_warning.call_once(|| {
                log::warn!(
                    "the connection to database {} on {} is not encrypted ({}); \
                     use sslmode=require (or verify-full) if the server supports TLS",
                    self.database,
                    self.hosts(),
                    if self.tls.is_some() {
                        "the server does not offer TLS"
                    } else {
                        "sslmode=disable or allow"
                    }
                )
            });
        }
    }

    fn hosts(&self) -> String {
        let names: Vec<String> = self
            .config
            .get_hosts()
            .iter()
            .map(|h| match h {
                Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        names.join(",")
    }

    /// A dedicated session that has run `LISTEN` on `channel` (see [`crate::listen`]),
    /// named [`crate::listen::APPLICATION_NAME`] in `pg_stat_activity`.
    pub async fn listen(&self, channel: &str) -> Result<crate::listen::Listener, DbError> {
        let mut config = self.config.clone();
        config.application_name(crate::listen::APPLICATION_NAME);
        match &self.tls {
            Some(tls) => {
                let connector = tokio_postgres_rustls::MakeRustlsConnect::new((**tls).clone());
                crate::listen::Listener::start(&config, connector, channel).await
            }
            None => crate::listen::Listener::start(&config, tokio_postgres::NoTls, channel).await,
        }
    }

    /// A pool of at most `max_size` connections to this target.
    pub fn pool(&self, max_size: usize) -> Result<Pool, DbError> {
        let target = self.clone();
        let mut manager_config = ManagerConfig::default();
        manager_config.custom_setup = Box::new(move |_url: &str| -> BoxFuture<'_, _> {
            let target = target.clone();
            async move {
                target
                    .connect()
                    .await
                    .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))
            }
            .boxed()
        });
        // No `SELECT 1` on every checkout: it doubled the round trips of each API request
        // (BENCHMARKS.md). A connection that died with its server is still found: its
        // driver reports the broken socket, and a query that fails on it drops it.
        manager_config.recycling_method = RecyclingMethod::Fast;
        // The URL is unused: custom_setup connects from the parsed target.
        let manager =
            AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config("", manager_config);
        Pool::builder(manager)
            .max_size(max_size.max(1))
            .wait_timeout(Some(Duration::from_secs(30)))
            .create_timeout(Some(DEFAULT_CONNECT_TIMEOUT + Duration::from_secs(5)))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|e| DbError::Config(format!("connection pool: {e}")))
    }
}

fn tls_config(root_cert: Option<&str>) -> Result<rustls::ClientConfig, DbError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = root_cert {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| {
                DbError::Config(format!(
                    "DATABASE_URL sslrootcert {path:?} could not be read: {e}"
                ))
            })?;
        if certs.is_empty() {
            return Err(DbError::Config(format!(
                "DATABASE_URL sslrootcert {path:?} holds no certificate"
            )));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| DbError::Config(format!("DATABASE_URL sslrootcert {path:?}: {e}")))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| DbError::Config(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// TLS that encrypts but takes any certificate: `sslmode=prefer`, as libpq does it.
fn unverified_tls_config() -> Result<rustls::ClientConfig, DbError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| DbError::Config(format!("TLS setup: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    Ok(config)
}

/// Accepts any server certificate, while still checking that the server holds its key
/// (the handshake signatures): `sslmode=prefer` promises encryption, not identity.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS connector that notes whether the handshake happened: with `sslmode=prefer` the
/// server's answer decides, and tokio-postgres does not say which way it went.
struct NoteHandshake<T> {
    inner: T,
    done: Arc<AtomicBool>,
}

impl<S, T> MakeTlsConnect<S> for NoteHandshake<T>
where
    T: MakeTlsConnect<S>,
    T::TlsConnect: TlsConnect<S>,
    <T::TlsConnect as TlsConnect<S>>::Future: Send + 'static,
{
    type Stream = T::Stream;
    type TlsConnect = NoteHandshake<T::TlsConnect>;
    type Error = T::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<Self::TlsConnect, Self::Error> {
        Ok(NoteHandshake {
            inner: self.inner.make_tls_connect(domain)?,
            done: Arc::clone(&self.done),
        })
    }
}

impl<S, T> TlsConnect<S> for NoteHandshake<T>
where
    T: TlsConnect<S>,
    T::Future: Send + 'static,
{
    type Stream = T::Stream;
    type Error = T::Error;
    type Future = BoxFuture<'static, Result<T::Stream, T::Error>>;

    fn connect(self, stream: S) -> Self::Future {
        let handshake = self.inner.connect(stream);
        let done = self.done;
        async move {
            let stream = handshake.await?;
            done.store(true, Ordering::Relaxed);
            Ok(stream)
        }
        .boxed()
    }
}

/// Supabase's pooler host (`*.pooler.supabase.com`) on its transaction-mode port 6543.
fn is_supabase_transaction_pooler(url: &Url) -> bool {
    url.host_str()
        .is_some_and(|h| h.to_ascii_lowercase().ends_with(".pooler.supabase.com"))
        && url.port() == Some(6543)
}

/// A failed connection attempt, told apart by its SQLSTATE.
fn connect_error(e: &tokio_postgres::Error) -> DbError {
    if e.code() == Some(&tokio_postgres::error::SqlState::INVALID_CATALOG_NAME) {
        DbError::UnknownDatabase(describe_pg_error(e))
    } else {
        DbError::Connect(describe_pg_error(e))
    }
}

/// The error with its source chain ("db error: FATAL: …", "invalid peer certificate: …"),
/// which tokio-postgres' own Display leaves out.
pub(crate) fn describe_pg_error(e: &tokio_postgres::Error) -> String {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = s.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_without_sslmode_prefer_tls_without_requiring_it() {
        let t = ConnectTarget::parse("postgres://postgres@127.0.0.1:5432/background_jobs").unwrap();
        assert!(t.tls.is_some() && !t.uses_tls());
        assert_eq!(t.database(), "background_jobs");
        let t = ConnectTarget::parse("postgres://postgres@127.0.0.1/db?sslmode=disable").unwrap();
        assert!(t.tls.is_none());
    }

    #[test]
    fn other_parameters_are_passed_on_as_written() {
        // As the README's takeover step writes it: a space encoded as %20.
        let t = ConnectTarget::parse(
            "postgres://u@127.0.0.1/db?options=-c%20lock_timeout%3D10s&sslmode=disable&application_name=a%2Bb",
        )
        .unwrap();
        assert_eq!(t.config.get_options(), Some("-c lock_timeout=10s"));
        assert_eq!(t.config.get_application_name(), Some("a+b"));
        assert!(t.tls.is_none());
        let t =
            ConnectTarget::parse("postgres://u@127.0.0.1/db?options=-clock_timeout%3D3s").unwrap();
        assert_eq!(t.config.get_options(), Some("-clock_timeout=3s"));
    }

    #[test]
    fn loopback_hosts_are_told_apart_from_remote_ones() {
        for url in [
            "postgres://u@127.0.0.1/db",
            "postgres://u@localhost:5433/db",
            "postgres://u@[::1]/db",
            "postgres://u@%2Fvar%2Frun%2Fpostgresql/db",
        ] {
            assert!(ConnectTarget::parse(url).unwrap().is_loopback(), "{url}");
        }
        for url in [
            "postgres://u@db.example.com/db",
            "postgres://u@10.0.0.5/db",
            "postgres://u@localhost/db?hostaddr=10.0.0.5",
        ] {
            assert!(!ConnectTarget::parse(url).unwrap().is_loopback(), "{url}");
        }
    }

    #[test]
    fn sslmode_require_turns_tls_on() {
        let t = ConnectTarget::parse(
            "postgresql://u:p@db.example.supabase.co:5432/postgres?sslmode=require",
        )
        .unwrap();
        assert!(t.uses_tls());
    }

    #[test]
    fn bad_urls_name_the_variable_and_hide_the_password() {
        let e = ConnectTarget::parse("mysql://u:secret@h/db")
            .unwrap_err()
            .to_string();
        assert!(e.contains("DATABASE_URL") && !e.contains("secret"), "{e}");
        let e = ConnectTarget::parse("postgres://u:secret@h/db?sslmode=sometimes")
            .unwrap_err()
            .to_string();
        assert!(e.contains("sslmode") && !e.contains("secret"), "{e}");
        let e =
            ConnectTarget::parse("postgres://u:secret@h/db?sslmode=require&sslrootcert=/nope.pem")
                .unwrap_err()
                .to_string();
        assert!(e.contains("/nope.pem") && !e.contains("secret"), "{e}");
    }

    #[test]
    fn transaction_pooling_is_switched_on_by_the_url_or_found_from_supabase_port_6543() {
        let direct = ConnectTarget::parse("postgres://u:p@127.0.0.1:5432/db").unwrap();
        assert!(!direct.transaction_pooling());
        let switched =
            ConnectTarget::parse("postgres://u:p@127.0.0.1:6432/db?pgbouncer=true").unwrap();
        assert!(switched.transaction_pooling());
        let supabase = ConnectTarget::parse(
            "postgresql://postgres.abc:p@aws-0-eu-central-1.pooler.supabase.com:6543/postgres",
        )
        .unwrap();
        assert!(supabase.transaction_pooling());
        let session = ConnectTarget::parse(
            "postgresql://postgres.abc:p@aws-0-eu-central-1.pooler.supabase.com:5432/postgres",
        )
        .unwrap();
        assert!(!session.transaction_pooling());
        let off = ConnectTarget::parse(
            "postgresql://u:p@aws-0-eu-central-1.pooler.supabase.com:6543/postgres?pgbouncer=false",
        )
        .unwrap();
        assert!(!off.transaction_pooling());
        let e = ConnectTarget::parse("postgres://u:secret@h/db?pgbouncer=maybe")
            .unwrap_err()
            .to_string();
        assert!(e.contains("pgbouncer") && !e.contains("secret"), "{e}");
    }

    #[test]
    fn debug_output_has_no_password() {
        let t = ConnectTarget::parse("postgres://user:hunter2@127.0.0.1/db").unwrap();
        assert!(!format!("{t:?}").contains("hunter2"));
    }
}
