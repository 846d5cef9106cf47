//! Runs the real `api-server` binary as a child process for tests.

#![allow(dead_code)]

use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

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
    pub log_path: std::path::PathBuf,
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
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_api-server"));
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .current_dir(std::env::temp_dir())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null());
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start api-server");
        let mut server = Self {
            child: Some(child),
            port,
            log_path,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if reqwest::get(server.url("/healthz")).await.is_ok() {
                break;
            }
            if let Some(status) = server.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("server exited early ({status}):\n{}", server.log());
            }
            assert!(
                Instant::now() < deadline,
                "server did not start:\n{}",
                server.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
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
