//! What the browser tests share: the real server binary, chromedriver with a headless
//! Chromium, explicit waits with deadlines, and screenshots in `target/test-artifacts/`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};

use super::server::{api_server, free_port, wait_until_up};

/// How long any one expected state may take to show.
pub const WAIT: Duration = Duration::from_secs(20);

/// `target/test-artifacts/`, created on first use.
pub fn artifacts_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(|target| target.join("test-artifacts"))
        .unwrap_or_else(|| std::env::temp_dir().join("test-artifacts"));
    std::fs::create_dir_all(&dir).expect("create target/test-artifacts");
    dir
}

/// A unique scratch directory, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> Self {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!(
            "bgjobs-{label}-{}-{n}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------------
// The server.

/// `api-server serve` with a clean environment, stopped on drop.
pub struct Server {
    child: Option<Child>,
    pub port: u16,
    pub base: String,
    vars: Vec<(String, String)>,
    log: PathBuf,
}

impl Server {
    /// Starts the real binary on a free port against `database_url` and waits for
    /// `/healthz`. Both jobs stay off their schedule during a test: no catch-up on start.
    pub async fn start(name: &str, database_url: &str, extra: &[(&str, &str)]) -> Self {
        let mut vars: Vec<(String, String)> = vec![
            ("DATABASE_URL".into(), database_url.into()),
            ("DATABASE_POOL_SIZE".into(), "4".into()),
            ("MISFIRE_WINDOW_SECS".into(), "0".into()),
            ("RUST_LOG".into(), "warn".into()),
        ];
        vars.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let port = free_port();
        let mut server = Self {
            child: None,
            port,
            base: format!("http://127.0.0.1:{port}"),
            vars,
            log: artifacts_dir().join(format!("{name}.server.log")),
        };
        let _ = std::fs::remove_file(&server.log);
        server.restart().await;
        server
    }

    /// Starts the server (again) on the same port.
    pub async fn restart(&mut self) {
        self.kill();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("server log file");
        let err = log.try_clone().expect("server log file");
        let vars: Vec<(&str, &str)> = self
            .vars
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let child = self.child.insert(
            api_server(&vars)
                .arg("serve")
                .env("BIND_ADDR", format!("127.0.0.1:{}", self.port))
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(err)
                .spawn()
                .expect("start api-server"),
        );
        wait_until_up(child, &self.base, &self.log).await;
    }

    /// Stops the server at once (SIGKILL): open connections are cut.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------------------------
// The browser.

/// chromedriver on a free port, in its own process group so that the Chromium it starts
/// is stopped with it on drop.
struct Chromedriver {
    child: Child,
    url: String,
}

impl Chromedriver {
    async fn start() -> Self {
        use std::os::unix::process::CommandExt;
        let port = free_port();
        let child = Command::new(
            std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".to_owned()),
        )
        .arg(format!("--port={port}"))
        .env("TZ", "UTC")
        .env("LANG", "en_US.UTF-8")
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect(
            "chromedriver is needed for the browser tests: \
             apt-get install chromium chromium-driver (scripts/install-test-deps.sh does)",
        );
        let driver = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = reqwest::Client::new();
        loop {
            if let Ok(r) = client.get(format!("{}/status", driver.url)).send().await {
                if let Ok(body) = r.json::<Value>().await {
                    if body["value"]["ready"] == json!(true) {
                        return driver;
                    }
                }
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        // The whole group: chromedriver and the browser processes it started.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A headless Chromium window of a given size, driven over WebDriver.
pub struct Browser {
    pub client: Client,
    name: String,
    // Dropped after the client: the driver, then the profile directory.
    _driver: Chromedriver,
    _profile: TempDir,
}

impl Browser {
    /// A fresh browser (new profile) with a `width`×`height` window; `name` prefixes its
    /// screenshots.
    pub async fn open(name: &str, width: u32, height: u32) -> Self {
        Self::start(name, width, height, None, false).await
    }

    /// The same with the dark colour scheme preferred (`prefers-color-scheme: dark`).
    pub async fn open_dark(name: &str, width: u32, height: u32) -> Self {
        Self::start(name, width, height, None, true).await
    }

    /// A fresh browser emulating a phone screen of `width`×`height` CSS pixels (a desktop
    /// window cannot be narrower than 500 px).
    pub async fn open_phone(name: &str, width: u32, height: u32) -> Self {
        let emulation = json!({
            "deviceMetrics": {"width": width, "height": height, "pixelRatio": 2.0}
        });
        Self::start(name, 500, height, Some(emulation), false).await
    }

    async fn start(
        name: &str,
        width: u32,
        height: u32,
        emulation: Option<Value>,
        dark: bool,
    ) -> Self {
        let browser_is_desktop = emulation.is_none();
        let driver = Chromedriver::start().await;
        let profile = TempDir::new("chromium-profile");
        let binary = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        let mut options = json!({
                "binary": binary,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-extensions",
                    "--hide-scrollbars",
                    "--force-color-profile=srgb",
                    "--lang=en-US",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.path().display()),
                ],
        });
        if let Some(emulation) = emulation {
            options["mobileEmulation"] = emulation;
        }
        if dark {
            if let Some(args) = options["args"].as_array_mut() {
                args.push(json!("--force-dark-mode"));
            }
        }
        caps.insert("goog:chromeOptions".into(), options);
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&driver.url)
            .await
            .expect("start a WebDriver session");
        let browser = Self {
            client,
            name: name.to_owned(),
            _driver: driver,
            _profile: profile,
        };
        // The window includes the frame of a desktop window: grow it so that the page
        // itself gets `width`×`height`.
        let frame = browser
            .eval(
                "[window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight]",
            )
            .await;
        let frame_w = frame[0].as_u64().unwrap_or(0) as u32;
        let frame_h = frame[1].as_u64().unwrap_or(0) as u32;
        if browser_is_desktop && (frame_w > 0 || frame_h > 0) {
            browser
                .client
                .set_window_size(width + frame_w, height + frame_h)
                .await
                .expect("resize the window");
        }
        browser
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigate");
    }

    /// Evaluates a JavaScript expression.
    pub async fn eval(&self, expression: &str) -> Value {
        self.client
            .execute(&format!("return ({expression});"), vec![])
            .await
            .unwrap_or_else(|e| panic!("evaluating {expression}: {e}"))
    }

    /// Waits until `expression` is truthy and returns its value; on timeout, saves a
    /// screenshot and fails naming `what`.
    pub async fn wait_for(&self, what: &str, expression: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let value = self
                .client
                .execute(&format!("return ({expression});"), vec![])
                .await
                .unwrap_or(Value::Null);
            let truthy = match &value {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return value;
            }
            if Instant::now() > deadline {
                let shot = self.screenshot(&format!("TIMEOUT-{}", slug(what))).await;
                let body = self.text("body").await;
                panic!(
                    "timed out after {WAIT:?} waiting for {what}\n  condition: {expression}\n  \
                     last value: {value}\n  screenshot: {}\n  page text:\n{body}",
                    shot.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The visible text of the first element matching `selector` ("" when none).
    pub async fn text(&self, selector: &str) -> String {
        self.client
            .execute(
                "const el = document.querySelector(arguments[0]); return el ? el.innerText : '';",
                vec![json!(selector)],
            )
            .await
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// Clicks an element, as a user would (WebDriver element click). An element the page
    /// replaced between finding and clicking it (a list re-rendered) is looked up again.
    pub async fn click(&self, selector: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let element = self
                .client
                .wait()
                .at_most(WAIT)
                .for_element(fantoccini::Locator::Css(selector))
                .await
                .unwrap_or_else(|e| panic!("no element {selector}: {e}"));
            match element.click().await {
                Ok(()) => return,
                Err(e) if e.is_stale_element_reference() && Instant::now() < deadline => {}
                Err(e) => panic!("clicking {selector}: {e}"),
            }
        }
    }

    /// Types into an element.
    pub async fn type_into(&self, selector: &str, text: &str) {
        let element = self
            .client
            .find(fantoccini::Locator::Css(selector))
            .await
            .unwrap_or_else(|e| panic!("no element {selector}: {e}"));
        element.clear().await.expect("clear the field");
        element.send_keys(text).await.expect("type");
    }

    /// Saves a PNG of the window as `target/test-artifacts/<name>-<label>.png`.
    pub async fn screenshot(&self, label: &str) -> PathBuf {
        let path = artifacts_dir().join(format!("{}-{label}.png", self.name));
        match self.client.screenshot().await {
            Ok(png) => {
                let _ = std::fs::write(&path, png);
            }
            Err(e) => eprintln!("screenshot {label} failed: {e}"),
        }
        path
    }

    /// Ends the WebDriver session (the driver and its browser are stopped on drop anyway).
    pub async fn close(self) {
        let Self {
            client,
            _driver,
            _profile,
            ..
        } = self;
        let _ = tokio::time::timeout(Duration::from_secs(10), client.close()).await;
    }
}

fn slug(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(60)
        .collect()
}

/// A JavaScript string literal.
pub fn js_str(text: &str) -> String {
    Value::String(text.to_owned()).to_string()
}
