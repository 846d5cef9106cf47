//! HTTP load: `wrk` when installed, else a built-in closed loop (N keep-alive connections,
//! each sending its next request when the previous answer is read), which also measures
//! the mocks' capacity. Both report requests per second and latency percentiles.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::error::{bail, Context, Result};

/// One request, sent again and again.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub method: Method,
    /// Path and query.
    pub path: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
}

impl Target {
    pub fn get(addr: SocketAddr, path: impl Into<String>) -> Self {
        Self {
            addr,
            method: Method::GET,
            path: path.into(),
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn url(&self) -> String {
        format!("http://{}{}", self.addr, self.path)
    }

    fn request(&self) -> Result<Request<Full<Bytes>>> {
        let mut builder = Request::builder()
            .method(self.method.clone())
            .uri(&self.path)
            .header("host", self.addr.to_string());
        for (name, value) in &self.headers {
            builder = builder.header(*name, value);
        }
        if !self.body.is_empty() {
            builder = builder.header("content-type", "application/json");
        }
        builder
            .body(Full::new(self.body.clone()))
            .context("building a request")
    }
}

/// What a load run measured.
#[derive(Debug, Clone)]
pub struct LoadResult {
    pub requests: u64,
    /// Answers that were not 2xx.
    pub non_2xx: u64,
    /// Connection or protocol failures.
    pub errors: u64,
    pub rps: f64,
    pub p50: Duration,
    pub p99: Duration,
    /// `wrk` or `built-in`.
    pub tool: &'static str,
}

/// One HTTP/1.1 keep-alive connection.
pub struct Connection {
    sender: http1::SendRequest<Full<Bytes>>,
}

impl Connection {
    pub async fn open(addr: SocketAddr) -> Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .with_context(|| format!("HTTP handshake with {addr}"))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Self { sender })
    }

    /// Sends one request and reads the whole answer: status and body.
    pub async fn send(&mut self, target: &Target) -> Result<(u16, Bytes)> {
        self.sender
            .ready()
            .await
            .with_context(|| format!("connection to {} closed", target.addr))?;
        let response = self
            .sender
            .send_request(target.request()?)
            .await
            .with_context(|| format!("{} {}", target.method, target.url()))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .with_context(|| format!("reading the answer of {}", target.url()))?
            .to_bytes();
        Ok((status, body))
    }
}

/// One request on a fresh connection.
pub async fn fetch(target: &Target) -> Result<(u16, Bytes)> {
    Connection::open(target.addr).await?.send(target).await
}

/// The built-in closed loop: `connections` connections for `duration`.
pub async fn run_builtin(
    target: &Target,
    connections: usize,
    duration: Duration,
) -> Result<LoadResult> {
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = Vec::with_capacity(connections);
    for _ in 0..connections.max(1) {
        let target = target.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies: Vec<u32> = Vec::new();
            let (mut non_2xx, mut errors) = (0u64, 0u64);
            let mut connection: Option<Connection> = None;
            while Instant::now() < deadline {
                let conn = match connection.as_mut() {
                    Some(conn) => conn,
                    None => match Connection::open(target.addr).await {
                        Ok(conn) => connection.insert(conn),
                        Err(_) => {
                            errors += 1;
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    },
                };
                let sent = Instant::now();
                match conn.send(&target).await {
                    Ok((status, _)) => {
                        let micros = sent.elapsed().as_micros();
                        latencies.push(u32::try_from(micros).unwrap_or(u32::MAX));
                        if !(200..300).contains(&status) {
                            non_2xx += 1;
                        }
                    }
                    Err(_) => {
                        errors += 1;
                        connection = None;
                    }
                }
            }
            (latencies, non_2xx, errors)
        }));
    }
    let mut latencies = Vec::new();
    let (mut non_2xx, mut errors) = (0, 0);
    for worker in workers {
        let (mut l, n, e) = worker.await.context("a load worker panicked")?;
        latencies.append(&mut l);
        non_2xx += n;
        errors += e;
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let requests = latencies.len() as u64;
    Ok(LoadResult {
        requests,
        non_2xx,
        errors,
        rps: requests as f64 / elapsed.as_secs_f64(),
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        tool: "built-in",
    })
}

/// The `q` quantile of sorted microsecond latencies.
pub fn percentile(sorted_micros: &[u32], q: f64) -> Duration {
    if sorted_micros.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted_micros.len() as f64 * q).ceil() as usize).clamp(1, sorted_micros.len());
    Duration::from_micros(u64::from(sorted_micros[rank - 1]))
}

/// Whether `wrk` is on the `PATH`.
pub fn wrk_available() -> bool {
    std::process::Command::new("wrk")
        .arg("--version")
        .output()
        .is_ok()
}

/// `wrk -t<threads> -c<connections> -d<secs>s --latency <url>`.
pub async fn run_wrk(
    target: &Target,
    threads: usize,
    connections: usize,
    duration: Duration,
) -> Result<LoadResult> {
    let mut command = tokio::process::Command::new("wrk");
    command
        .arg(format!("-t{threads}"))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{}s", duration.as_secs().max(1)))
        .arg("--latency");
    for (name, value) in &target.headers {
        command.arg("-H").arg(format!("{name}: {value}"));
    }
    let output = command
        .arg(target.url())
        .kill_on_drop(true)
        .output()
        .await
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "wrk failed ({}): {}{}",
            output.status,
            text,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    parse_wrk(&text).with_context(|| format!("reading wrk's output:\n{text}"))
}

/// Reads `Requests/sec`, the 50% and 99% latency lines, the request count and the error
/// lines of `wrk --latency`.
pub fn parse_wrk(text: &str) -> Result<LoadResult> {
    let mut rps = None;
    let (mut p50, mut p99) = (None, None);
    let mut requests = None;
    let (mut non_2xx, mut errors) = (0u64, 0u64);
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", value] => rps = value.parse::<f64>().ok(),
            ["50%", value] => p50 = parse_duration(value),
            ["99%", value] => p99 = parse_duration(value),
            [count, "requests", "in", ..] => requests = count.parse::<u64>().ok(),
            ["Non-2xx", "or", "3xx", "responses:", count] => {
                non_2xx = count.parse().unwrap_or(u64::MAX);
            }
            ["Socket", "errors:", rest @ ..] => {
                // connect 0, read 0, write 0, timeout 0
                errors = rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum();
            }
            _ => {}
        }
    }
    Ok(LoadResult {
        requests: requests.context("no request count")?,
        non_2xx,
        errors,
        rps: rps.context("no Requests/sec line")?,
        p50: p50.context("no 50% line (was --latency given?)")?,
        p99: p99.context("no 99% line")?,
        tool: "wrk",
    })
}

/// wrk's durations: `412.00us`, `1.54ms`, `2.01s`, `1.00m`.
fn parse_duration(text: &str) -> Option<Duration> {
    let (number, unit) = text.split_at(text.find(|c: char| c.is_ascii_alphabetic())?);
    let value: f64 = number.parse().ok()?;
    let secs = match unit {
        "us" => value / 1e6,
        "ms" => value / 1e3,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRK: &str = "Running 10s test @ http://127.0.0.1:8080/healthz
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   411.02us  298.11us  10.99ms   91.23%
    Req/Sec    39.94k     3.01k   45.26k    70.50%
  Latency Distribution
     50%  339.00us
     75%  462.00us
     90%  641.00us
     99%    1.54ms
  795033 requests in 10.00s, 112.97MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 12
Requests/sec:  79480.82
Transfer/sec:     11.29MB
";

    #[test]
    fn wrk_output_is_read() {
        let result = parse_wrk(WRK).expect("parses");
        assert_eq!(result.requests, 795_033);
        assert!((result.rps - 79_480.82).abs() < 0.01);
        assert_eq!(result.p50, Duration::from_micros(339));
        assert_eq!(result.p99, Duration::from_micros(1540));
        assert_eq!((result.non_2xx, result.errors), (12, 3));
    }

    #[test]
    fn wrk_output_without_latency_lines_is_an_error() {
        assert!(parse_wrk("Requests/sec: 5.0\n 10 requests in 2.00s, 1KB read").is_err());
    }

    #[test]
    fn durations_in_every_wrk_unit() {
        assert_eq!(parse_duration("2.00s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.00m"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("250.00us"), Some(Duration::from_micros(250)));
        assert_eq!(parse_duration("12"), None);
    }

    #[test]
    fn percentiles_pick_the_rank() {
        let sorted: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&sorted, 0.5), Duration::from_micros(50));
        assert_eq!(percentile(&sorted, 0.99), Duration::from_micros(99));
        assert_eq!(percentile(&[], 0.99), Duration::ZERO);
    }
}
