//! Runs the real `api-server` binary as a child process for tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The `api-server` binary with a clean environment: `PATH`, `RUST_LOG=info`, then `vars`,
/// run in the temporary directory.
pub fn api_server(vars: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_api-server"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "info")
        .current_dir(std::env::temp_dir());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd
}

/// Runs `cmd` to its end: exit code (-1 for a signal), stdout and stderr.
pub fn run(cmd: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("run api-server");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `api-server serve`, killed when dropped.
pub struct ServerProcess {
    child: Option<Child>,
    pub port: u16,
    pub log_path: PathBuf,
    /// Its `ADMIN_TOKEN`, sent by the request helpers below.
    admin_token: Option<String>,
}

impl ServerProcess {
    /// Starts `serve` with a clean environment plus `vars` on a free port, and waits until
    /// `/healthz` answers.
    pub async fn start(vars: &[(&str, &str)]) -> Self {
        Self::start_on(free_port(), vars).await
    }

    /// The same on a given port (a restart keeps its port and so its worker id).
    pub async fn start_on(port: u16, vars: &[(&str, &str)]) -> Self {
        let log_path = std::env::temp_dir().join(format!(
            "bgjobs-server-{}-{port}-{}.log",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        let log = std::fs::File::create(&log_path).unwrap();
        // Unless a test says otherwise, no slot falls due while it runs: the jobs' default
        // schedules (02:00 and 03:00 UTC) would otherwise add a run to a test that happens
        // to run at that hour, or catch one up on start.
        let mut vars = vars.to_vec();
        let schedules = ["AUDIO_CLEANUP_SCHEDULE", "COST_UPDATE_SCHEDULE"];
        if !vars.iter().any(|(k, _)| schedules.contains(k)) {
            vars.extend(schedules.map(|name| (name, "0 0 1 1 *")));
            if !vars.iter().any(|(k, _)| *k == "MISFIRE_WINDOW_SECS") {
                vars.push(("MISFIRE_WINDOW_SECS", "0"));
            }
        }
        let child = api_server(&vars)
            .arg("serve")
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("start api-server");
        let admin_token = vars
            .iter()
            .find(|(k, _)| *k == "ADMIN_TOKEN")
            .map(|(_, v)| (*v).to_owned());
        let mut server = Self {
            child: Some(child),
            port,
            log_path,
            admin_token,
        };
        let base = server.url("");
        wait_until_up(server.child.as_mut().unwrap(), &base, &server.log_path).await;
        server
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The value of one series (`name{labels}` as exposed) in a scrape of `/metrics`;
    /// `None` when the scrape fails or lacks it.
    pub async fn metric(&self, series: &str) -> Option<String> {
        let scrape = reqwest::get(self.url("/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        scrape
            .lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map(str::to_owned)
    }

    /// A request to `path`, with the server's `ADMIN_TOKEN` as bearer token if it has one.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = reqwest::Client::new().request(method, self.url(path));
        match &self.admin_token {
            Some(token) => req.bearer_auth(token),
            None => req,
        }
    }

    /// `GET path`: the status and the JSON body (`null` if there is none).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        answer(self.request(reqwest::Method::GET, path)).await
    }

    /// The entry of job `name` in `GET /internal/api/v1/jobs`.
    pub async fn job(&self, name: &str) -> Value {
        let (status, body) = self.get("/internal/api/v1/jobs").await;
        assert_eq!(status, 200, "{body}");
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["job_name"] == name)
            .cloned()
            .unwrap()
    }

    /// `POST path` with an optional JSON body: the status and the JSON body.
    pub async fn post(&self, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.request(reqwest::Method::POST, path);
        if let Some(body) = body {
            req = req.json(&body);
        }
        answer(req).await
    }

    /// Starts a manual run of `job` and returns its execution id.
    pub async fn start_run(&self, job: &str) -> i64 {
        let (status, body) = self
            .post(&format!("/internal/api/v1/jobs/{job}/run"), None)
            .await;
        assert_eq!(status, 202, "{body}");
        body["data"]["execution_id"].as_i64().unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// What the server printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// SIGTERM, without waiting.
    pub fn sigterm(&self) {
        self.signal("-TERM");
    }

    /// SIGTERM, then waits up to `limit` for the exit.
    pub async fn terminate(&mut self, limit: Duration) -> (ExitStatus, Duration) {
        let started = Instant::now();
        self.signal("-TERM");
        self.wait(limit).await;
        let status = self.child.as_mut().unwrap().wait().unwrap();
        self.child = None;
        (status, started.elapsed())
    }

    /// SIGKILL: the process dies without any clean-up.
    pub async fn kill9(&mut self) {
        self.signal("-KILL");
        self.wait(Duration::from_secs(10)).await;
        let _ = self.child.as_mut().unwrap().wait();
        self.child = None;
    }

    async fn wait(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.child.as_mut().unwrap().try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "server did not exit in {limit:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn is_alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.log_path);
    }
}

/// Waits until the server `child` answers `GET /healthz` at `base`; panics with its log
/// if it exits first or takes more than a minute.
pub async fn wait_until_up(child: &mut Child, base: &str, log: &Path) {
    let log = || std::fs::read_to_string(log).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if reqwest::get(format!("{base}/healthz")).await.is_ok() {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("server exited early ({status}):\n{}", log());
        }
        assert!(
            Instant::now() < deadline,
            "server did not start:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn answer(req: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Polls `check` until it returns `Some`, or panics after `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
