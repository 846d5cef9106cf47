//! A fresh database per test, cloned from a migrated template.
//!
//! `TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`) names a
//! server and a maintenance database the tests may create databases from. The first test
//! of a process migrates a template database (named after the migrations, so a change to
//! them makes a new one, and built under an advisory lock so parallel test binaries share
//! it); each test then gets `CREATE DATABASE … TEMPLATE …`, which takes milliseconds, and
//! drops it when done. Databases left by killed test processes are swept at start.

use std::sync::atomic::{AtomicU32, Ordering};

use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tokio::sync::OnceCell;

use crate::{run_migrations, ConnectTarget, DbError, Pool};

/// The variable naming the test server.
pub const TEST_DATABASE_URL_VAR: &str = "TEST_DATABASE_URL";
const DEFAULT_TEST_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const PREFIX: &str = "bgjobs_test_";
const TEMPLATE_LOCK: i64 = 0x006A_6F62_7374_656D; // "jobstem"

static TEMPLATE: OnceCell<String> = OnceCell::const_new();
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The maintenance connection target of the test server.
pub fn admin_target() -> ConnectTarget {
    let url = std::env::var(TEST_DATABASE_URL_VAR)
        .unwrap_or_else(|_| DEFAULT_TEST_DATABASE_URL.to_owned());
    ConnectTarget::parse(&url).unwrap_or_else(|e| panic!("{TEST_DATABASE_URL_VAR}: {e}"))
}

/// A database that exists for one test and is dropped with this value.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    target: ConnectTarget,
    url: String,
}

impl TestDatabase {
    /// A fresh, migrated database.
    pub async fn new() -> Self {
        let template = TEMPLATE
            .get_or_init(|| async { build_template().await.expect("test template database") })
            .await;
        let name = unique_name();
        let admin = admin_target();
        let mut conn = admin.connect().await.expect("connect to the test server");
        // Copying a template fails while anyone is connected to it; retry briefly.
        let mut last_error = None;
        for _ in 0..50 {
            match diesel::sql_query(format!(
                "CREATE DATABASE \"{name}\" TEMPLATE \"{template}\""
            ))
            .execute(&mut conn)
            .await
            {
                Ok(_) => {
                    last_error = None;
                    break;
                }
                Err(e) => {
                    last_error = Some(e);
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
        if let Some(e) = last_error {
            panic!("creating test database {name}: {e}");
        }
        let target = admin.with_database(&name);
        let url = database_url(&name);
        Self { name, target, url }
    }

    /// A fresh database with no migrations applied.
    pub async fn empty() -> Self {
        let name = unique_name();
        let admin = admin_target();
        let mut conn = admin.connect().await.expect("connect to the test server");
        diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await
            .expect("create empty test database");
        let target = admin.with_database(&name);
        let url = database_url(&name);
        Self { name, target, url }
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A `postgres://` URL of this database, for a server under test.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Where to connect.
    pub fn target(&self) -> &ConnectTarget {
        &self.target
    }

    /// A small pool on this database.
    pub fn pool(&self) -> Pool {
        self.target.pool(4).expect("test pool")
    }

    /// One connection.
    pub async fn connect(&self) -> AsyncPgConnection {
        self.target
            .connect()
            .await
            .expect("connect to test database")
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs outside async; a short-lived runtime on its own thread does the work.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(runtime) = runtime {
                runtime.block_on(async {
                    if let Ok(mut conn) = admin_target().connect().await {
                        let _ = diesel::sql_query(format!(
                            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                        ))
                        .execute(&mut conn)
                        .await;
                    }
                });
            }
        })
        .join();
    }
}

/// The URL of a database on the test server, with the test server's credentials.
pub fn database_url(name: &str) -> String {
    let base = std::env::var(TEST_DATABASE_URL_VAR)
        .unwrap_or_else(|_| DEFAULT_TEST_DATABASE_URL.to_owned());
    let mut url = url::Url::parse(&base).expect("TEST_DATABASE_URL is a URL");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

/// `bgjobs_test_<pid>_<n>_<random>`: the pid lets a later run sweep what a killed test
/// process left behind.
fn unique_name() -> String {
    format!(
        "{PREFIX}{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst),
        random_suffix()
    )
}

fn random_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_owned()
}

async fn build_template() -> Result<String, DbError> {
    // Named after the migrations' contents (editing one makes a new template) and after
    // the versions this build embeds: should the two ever disagree (a build that saw a new
    // migration's files but not yet its embedding), the name still says which set the
    // template holds.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in crate::embedded_versions().join(",").bytes() {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let name = format!(
        "{PREFIX}template_{}_{:08x}",
        env!("MIGRATIONS_DIGEST"),
        hash as u32
    );
    let admin = admin_target();
    let mut conn = admin.connect().await?;
    diesel::sql_query(format!("SELECT pg_advisory_lock({TEMPLATE_LOCK})"))
        .execute(&mut conn)
        .await?;
    sweep_leftovers(&mut conn, &name).await;
    #[derive(diesel::QueryableByName)]
    struct Exists {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        exists: bool,
    }
    let exists: Exists =
        diesel::sql_query("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS exists")
            .bind::<diesel::sql_types::Text, _>(&name)
            .get_result(&mut conn)
            .await?;
    if !exists.exists {
        let building = format!("{name}_building");
        diesel::sql_query(format!(
            "DROP DATABASE IF EXISTS \"{building}\" WITH (FORCE)"
        ))
        .execute(&mut conn)
        .await?;
        diesel::sql_query(format!("CREATE DATABASE \"{building}\""))
            .execute(&mut conn)
            .await?;
        run_migrations(&admin.with_database(&building)).await?;
        diesel::sql_query(format!(
            "ALTER DATABASE \"{building}\" RENAME TO \"{name}\""
        ))
        .execute(&mut conn)
        .await?;
    }
    diesel::sql_query(format!("SELECT pg_advisory_unlock({TEMPLATE_LOCK})"))
        .execute(&mut conn)
        .await?;
    Ok(name)
}

/// Drops test databases whose process is gone, and templates of other migration sets that
/// nobody has used for a day.
async fn sweep_leftovers(conn: &mut AsyncPgConnection, keep_template: &str) {
    #[derive(diesel::QueryableByName)]
    struct Name {
        #[diesel(sql_type = diesel::sql_types::Text)]
        datname: String,
    }
    let Ok(names) = diesel::sql_query(format!(
        "SELECT datname::text AS datname FROM pg_database WHERE datname LIKE '{PREFIX}%'"
    ))
    .load::<Name>(conn)
    .await
    else {
        return;
    };
    // Another checkout sharing this server may still clone its own template (its digest
    // differs by path and content): only templates untouched for a day are dropped. Where
    // the file dates cannot be read (not a superuser), other templates are kept.
    let old_templates: Vec<String> = diesel::sql_query(format!(
        "SELECT datname::text AS datname FROM pg_database \
         WHERE datname LIKE '{PREFIX}template_%' \
           AND (pg_stat_file('base/' || oid::text)).modification < now() - interval '1 day'"
    ))
    .load::<Name>(conn)
    .await
    .map(|rows| rows.into_iter().map(|n| n.datname).collect())
    .unwrap_or_default();
    for Name { datname } in names {
        let stale = if let Some(rest) = datname.strip_prefix(&format!("{PREFIX}template_")) {
            datname != keep_template
                && !rest.ends_with("_building")
                && old_templates.contains(&datname)
        } else {
            datname
                .strip_prefix(PREFIX)
                .and_then(|rest| rest.split('_').next())
                .and_then(|pid| pid.parse::<u32>().ok())
                .is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
        };
        if stale {
            let _ = diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS \"{datname}\" WITH (FORCE)"
            ))
            .execute(conn)
            .await;
        }
    }
}

/// A throwaway PostgreSQL server of a test's own, on another port, so that a test can
/// restart it or give it TLS without disturbing any other test. Needs the PostgreSQL
/// server binaries (`initdb`, `pg_ctl`) and, when run as root, the `postgres` system user.
#[derive(Debug)]
pub struct TempCluster {
    dir: std::path::PathBuf,
    bin: std::path::PathBuf,
    port: u16,
}

impl TempCluster {
    /// Initialises and starts a cluster. `extra_conf` lines go to `postgresql.conf`, and
    /// `files` (name, contents) are written into the data directory first (certificates).
    pub fn start(extra_conf: &[&str], files: &[(&str, &[u8])]) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let bin = postgres_bin_dir();
        let dir = std::env::temp_dir().join(format!(
            "bgjobs-cluster-{}-{}",
            std::process::id(),
            random_suffix()
        ));
        std::fs::create_dir_all(&dir).expect("cluster dir");
        let port = free_port();
        let cluster = Self { dir, bin, port };
        cluster.chown();
        cluster.pg(
            "initdb",
            &[
                "-D",
                cluster.data().to_str().unwrap_or_default(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        let mut conf = format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nfsync = off\n",
            cluster.dir.display()
        );
        for line in extra_conf {
            conf.push_str(line);
            conf.push('\n');
        }
        let conf_path = cluster.data().join("postgresql.conf");
        let mut existing = std::fs::read_to_string(&conf_path).expect("postgresql.conf");
        existing.push_str(&conf);
        std::fs::write(&conf_path, existing).expect("write postgresql.conf");
        for (name, contents) in files {
            let path = cluster.data().join(name);
            std::fs::write(&path, contents).expect("write cluster file");
            let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
        }
        cluster.chown();
        cluster.start_server();
        cluster
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A URL of one of its databases.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// The data directory.
    pub fn data(&self) -> std::path::PathBuf {
        self.dir.join("data")
    }

    /// Stops the server (fast shutdown: open connections are cut).
    pub fn stop(&self) {
        self.pg(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().unwrap_or_default(),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
        );
    }

    /// Starts the server again after [`TempCluster::stop`].
    pub fn start_server(&self) {
        let log = self.dir.join("server.log");
        self.pg(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().unwrap_or_default(),
                "-l",
                log.to_str().unwrap_or_default(),
                "-w",
                "start",
            ],
        );
    }

    fn chown(&self) {
        if running_as_root() {
            let status = std::process::Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&self.dir)
                .status()
                .expect("chown");
            assert!(status.success(), "chown of {} failed", self.dir.display());
        }
    }

    fn pg(&self, tool: &str, args: &[&str]) {
        let exe = self.bin.join(tool);
        let output = if running_as_root() {
            std::process::Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&exe)
                .args(args)
                .output()
        } else {
            std::process::Command::new(&exe).args(args).output()
        }
        .unwrap_or_else(|e| panic!("running {}: {e}", exe.display()));
        assert!(
            output.status.success(),
            "{tool} {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for TempCluster {
    fn drop(&mut self) {
        let _ = std::process::Command::new(if running_as_root() { "runuser" } else { "true" })
            .args(if running_as_root() {
                vec!["-u", "postgres", "--"]
            } else {
                vec![]
            })
            .arg(self.bin.join("pg_ctl"))
            .args([
                "-D",
                self.data().to_str().unwrap_or_default(),
                "-m",
                "immediate",
                "stop",
            ])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn running_as_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `pg_config --bindir`, else the newest `/usr/lib/postgresql/*/bin`.
fn postgres_bin_dir() -> std::path::PathBuf {
    if let Ok(out) = std::process::Command::new("pg_config")
        .arg("--bindir")
        .output()
    {
        let dir = std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return dir;
        }
    }
    let mut versions: Vec<std::path::PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    versions.sort();
    versions
        .pop()
        .filter(|d| d.join("initdb").exists())
        .expect("PostgreSQL server binaries (initdb, pg_ctl) are required for this test")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
