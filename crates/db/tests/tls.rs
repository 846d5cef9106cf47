//! `sslmode=require` connects over TLS and verifies the certificate, for the pool and for
//! migrations, and `sslmode=prefer` (the default) encrypts whenever the server offers TLS,
//! against PostgreSQL servers of the test's own with and without a self-signed
//! certificate.

use db::testing::TempCluster;
use db::ConnectTarget;
use diesel::sql_types::Bool;
use diesel_async::RunQueryDsl;

#[derive(diesel::QueryableByName)]
struct Ssl {
    #[diesel(sql_type = Bool)]
    ssl: bool,
}

fn tls_cluster() -> (TempCluster, std::path::PathBuf) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("certificate");
    let cert_pem = cert.cert.pem();
    let key_pem = cert.signing_key.serialize_pem();
    let cluster = TempCluster::start(
        &[
            "ssl = on",
            "ssl_cert_file = 'server.crt'",
            "ssl_key_file = 'server.key'",
        ],
        &[
            ("server.crt", cert_pem.as_bytes()),
            ("server.key", key_pem.as_bytes()),
        ],
    );
    let ca = std::env::temp_dir().join(format!("bgjobs-ca-{}.pem", cluster.port()));
    std::fs::write(&ca, cert_pem).unwrap();
    (cluster, ca)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_require_connects_over_verified_tls_for_pool_and_migrations() {
    let (cluster, ca) = tls_cluster();
    let url = format!(
        "{}?sslmode=require&sslrootcert={}",
        cluster.url("jobs"),
        ca.display()
    );
    let target = ConnectTarget::parse(&url).unwrap();
    assert!(target.uses_tls());
    // Database creation and migrations go over TLS too.
    assert!(db::ensure_database(&target).await.unwrap());
    let applied = db::run_migrations(&target).await.unwrap();
    assert_eq!(applied.len(), db::embedded_versions().len());

    let pool = target.pool(2).unwrap();
    let mut conn = pool.get().await.unwrap();
    let ssl: Ssl = diesel::sql_query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .get_result(&mut conn)
        .await
        .unwrap();
    assert!(ssl.ssl, "the pooled connection is not encrypted");
    let _ = std::fs::remove_file(ca);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_is_refused() {
    let (cluster, ca) = tls_cluster();
    // Without the self-signed root, verification against the web PKI roots must fail.
    let url = format!("{}?sslmode=require", cluster.url("postgres"));
    let err = ConnectTarget::parse(&url)
        .unwrap()
        .connect()
        .await
        .err()
        .expect("an unverifiable certificate must be refused");
    let message = err.to_string();
    assert!(
        message.to_lowercase().contains("certificate"),
        "unexpected error: {message}"
    );
    let _ = std::fs::remove_file(ca);
}

async fn is_encrypted(target: &ConnectTarget) -> bool {
    let mut conn = target.connect().await.unwrap();
    let ssl: Ssl = diesel::sql_query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .get_result(&mut conn)
        .await
        .unwrap();
    ssl.ssl
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urls_without_sslmode_and_sslmode_prefer_use_tls_when_the_server_offers_it() {
    let (cluster, ca) = tls_cluster();
    for url in [
        cluster.url("postgres"),
        format!("{}?sslmode=prefer", cluster.url("postgres")),
    ] {
        let target = ConnectTarget::parse(&url).unwrap();
        // The certificate is self-signed: prefer encrypts without verifying, as libpq.
        assert!(is_encrypted(&target).await, "{url} connected in plaintext");
    }
    let disabled = format!("{}?sslmode=disable", cluster.url("postgres"));
    assert!(!is_encrypted(&ConnectTarget::parse(&disabled).unwrap()).await);
    let _ = std::fs::remove_file(ca);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_prefer_falls_back_to_plaintext_when_the_server_has_no_tls() {
    let cluster = TempCluster::start(&["ssl = off"], &[]);
    let target = ConnectTarget::parse(&cluster.url("postgres")).unwrap();
    assert!(!is_encrypted(&target).await);
    // require does not fall back.
    let required = format!("{}?sslmode=require", cluster.url("postgres"));
    assert!(ConnectTarget::parse(&required)
        .unwrap()
        .connect()
        .await
        .is_err());
}

/// Connections for a transaction-mode pooler (`pgbouncer=true`) open their socket and set
/// up TLS themselves: the same sslmode rules hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooler_connections_follow_the_same_sslmode_rules() {
    let (cluster, ca) = tls_cluster();
    let verified = format!(
        "{}?pgbouncer=true&sslmode=require&sslrootcert={}",
        cluster.url("postgres"),
        ca.display()
    );
    let target = ConnectTarget::parse(&verified).unwrap();
    assert!(target.transaction_pooling());
    assert!(is_encrypted(&target).await, "require: plaintext");
    let preferred = format!("{}?pgbouncer=true", cluster.url("postgres"));
    assert!(is_encrypted(&ConnectTarget::parse(&preferred).unwrap()).await);
    let disabled = format!("{}?pgbouncer=true&sslmode=disable", cluster.url("postgres"));
    assert!(!is_encrypted(&ConnectTarget::parse(&disabled).unwrap()).await);
    // Without the self-signed root the certificate is refused.
    let unverified = format!("{}?pgbouncer=true&sslmode=require", cluster.url("postgres"));
    let err = ConnectTarget::parse(&unverified)
        .unwrap()
        .connect()
        .await
        .err()
        .expect("an unverifiable certificate must be refused");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    let _ = std::fs::remove_file(ca);

    let plain = TempCluster::start(&["ssl = off"], &[]);
    let fallback = format!("{}?pgbouncer=true", plain.url("postgres"));
    assert!(!is_encrypted(&ConnectTarget::parse(&fallback).unwrap()).await);
    let required = format!("{}?pgbouncer=true&sslmode=require", plain.url("postgres"));
    let err = ConnectTarget::parse(&required)
        .unwrap()
        .connect()
        .await
        .err()
        .expect("require must not fall back to plaintext");
    assert!(err.to_string().contains("TLS"), "{err}");
}
