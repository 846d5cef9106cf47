//! `live`: two `api-server serve` on one database, as two replicas behind a load balancer.
//! Server B holds `--live-streams` event streams open (each drained by a task of the
//! bench) plus one the bench reads; the bench starts `--live-changes` runs of
//! `audio_cleanup` on server A, one after the other, and times each from the moment it
//! sends the run request to A until (1) the run's `execution` event arrives on B's stream
//! and (2) B's `/jobs/status` shows the run (polled every millisecond on a keep-alive
//! connection). Then B's resident memory with the streams open.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::db::BenchDb;
use crate::error::{bail, Context, Result};
use crate::load::{percentile, Connection, Target};
use crate::mock::{Kind, Mock};
use crate::process::{memory_kib, Launch, Server};
use crate::report::{self, Figure};
use crate::scenarios::{free_port, serve_env, wait_ready, with_database};
use crate::Ctx;

/// Contract §7.4: a change shows on every server within 1 s.
const GOAL: Duration = Duration::from_secs(1);
/// Longest wait for one change before the figure fails.
const CHANGE_LIMIT: Duration = Duration::from_secs(30);
const STATUS_POLL: Duration = Duration::from_millis(1);

pub async fn run(ctx: &Ctx) -> Result<Vec<Figure>> {
    with_database(ctx, "live", |db| async move { body(ctx, &db).await }).await
}

/// A `GET /events` stream being read, one event at a time.
struct EventReader {
    response: reqwest::Response,
    buffer: String,
}

impl EventReader {
    async fn open(http: &reqwest::Client, port: u16) -> Result<reqwest::Response> {
        let response = http
            .get(format!("http://127.0.0.1:{port}/internal/api/v1/events"))
            .send()
            .await
            .context("opening an event stream")?;
        if response.status() != 200 {
            bail!("GET /events answered {}", response.status());
        }
        Ok(response)
    }

    /// Reads until an `execution` event satisfies `want`; returns its JSON.
    async fn until(
        &mut self,
        deadline: Instant,
        want: impl Fn(&serde_json::Value) -> bool,
    ) -> Result<serde_json::Value> {
        loop {
            while let Some(at) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..at + 2).collect();
                if !block.lines().any(|l| l == "event: execution") {
                    continue;
                }
                let data = block
                    .lines()
                    .find_map(|l| l.strip_prefix("data: "))
                    .unwrap_or_default();
                let value: serde_json::Value =
                    serde_json::from_str(data).context("an execution event that is not JSON")?;
                if want(&value) {
                    return Ok(value);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.response.chunk()).await {
                Err(_) => bail!("no matching event within {}s", CHANGE_LIMIT.as_secs()),
                Ok(Err(e)) => bail!("the event stream broke: {e}"),
                Ok(Ok(None)) => bail!("the event stream ended"),
                Ok(Ok(Some(bytes))) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
            }
        }
    }
}

/// Reads a stream to its end; the number of `execution` events it carried.
async fn drain(mut response: reqwest::Response) -> u64 {
    let mut count = 0;
    let mut tail = String::new();
    while let Ok(Some(bytes)) = response.chunk().await {
        tail.push_str(&String::from_utf8_lossy(&bytes));
        count += tail.matches("event: execution\n").count() as u64;
        // Keep only what may be the start of a line cut between chunks.
        let keep = tail.rfind('\n').map_or(0, |at| at + 1);
        tail.drain(..keep);
    }
    count
}

/// `started_at` and `status` of `audio_cleanup` in B's `/jobs/status`.
async fn shown(conn: &mut Connection, target: &Target) -> Result<(String, String)> {
    let (status, body) = conn.send(target).await?;
    if status != 200 {
        bail!("/jobs/status answered {status}");
    }
    let value: serde_json::Value = serde_json::from_slice(&body).context("/jobs/status JSON")?;
    let entry = value["data"]
        .as_array()
        .and_then(|d| d.iter().find(|e| e["job_name"] == "audio_cleanup"));
    Ok(entry.map_or_else(Default::default, |e| {
        (
            e["started_at"].as_str().unwrap_or_default().to_owned(),
            e["status"].as_str().unwrap_or_default().to_owned(),
        )
    }))
}

fn summary(figure: &mut Figure, label: &str, mut times: Vec<Duration>) {
    times.sort();
    let micros: Vec<u32> = times
        .iter()
        .map(|t| u32::try_from(t.as_micros()).unwrap_or(u32::MAX))
        .collect();
    let max = times.last().copied().unwrap_or_default();
    figure
        .field("changes", times.len().to_string())
        .field("median", report::millis(percentile(&micros, 0.5)))
        .field("p90", report::millis(percentile(&micros, 0.9)))
        .field("max", report::millis(max));
    figure.goal(&[(max < GOAL, format!("{label} max < {} s", GOAL.as_secs()))]);
}

async fn body(ctx: &Ctx, db: &BenchDb) -> Result<Vec<Figure>> {
    let deepgram = Mock::start(Kind::Deepgram, Duration::ZERO).await?;
    let storage = Mock::start(Kind::Storage, Duration::ZERO).await?;
    let (port_a, port_b) = (free_port()?, free_port()?);
    let spawn = |port: u16, label: &str| {
        Server::spawn(&Launch {
            binary: ctx.api_server.clone(),
            args: vec!["serve".to_owned()],
            env: serve_env(db, port, &deepgram, &storage),
            label: label.to_owned(),
        })
    };
    let mut a = spawn(port_a, "serve-live-a")?;
    let mut b = spawn(port_b, "serve-live-b")?;
    wait_ready(&mut a, port_a, Duration::from_secs(60)).await?;
    wait_ready(&mut b, port_b, Duration::from_secs(60)).await?;
    // Let both finish their start-up reads and connect their listeners.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, rss_ready) = memory_kib(b.pid()).unwrap_or((0, 0));

    let http = reqwest::Client::new();
    let mut idle = Vec::with_capacity(ctx.live_streams);
    for _ in 0..ctx.live_streams {
        idle.push(tokio::spawn(drain(EventReader::open(&http, port_b).await?)));
    }
    let mut stream = EventReader {
        response: EventReader::open(&http, port_b).await?,
        buffer: String::new(),
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, rss_streams) = memory_kib(b.pid()).unwrap_or((0, 0));

    let addr_b = SocketAddr::from(([127, 0, 0, 1], port_b));
    let status_target = Target::get(addr_b, "/internal/api/v1/jobs/status");
    let run_url = format!("http://127.0.0.1:{port_a}/internal/api/v1/jobs/audio_cleanup/run");
    let mut to_event = Vec::new();
    let mut to_status = Vec::new();
    for _ in 0..ctx.live_changes {
        let mut conn = Connection::open(addr_b).await?;
        let (before, _) = shown(&mut conn, &status_target).await?;
        let started = Instant::now();
        let target = status_target.clone();
        let poller = tokio::spawn(async move {
            loop {
                let (at, status) = shown(&mut conn, &target).await?;
                // A short run may already have ended when B reads it: any new run counts.
                if at != before && !status.is_empty() {
                    return Ok::<_, crate::error::Error>(started.elapsed());
                }
                if started.elapsed() > CHANGE_LIMIT {
                    bail!(
                        "B's /jobs/status did not show the run within {}s",
                        CHANGE_LIMIT.as_secs()
                    );
                }
                tokio::time::sleep(STATUS_POLL).await;
            }
        });
        let response = http
            .post(&run_url)
            .send()
            .await
            .context("POST …/run to A")?;
        if response.status() != 202 {
            bail!("A answered {} to run-now", response.status());
        }
        let answer: serde_json::Value = response.json().await.context("run-now JSON")?;
        let id = answer["data"]["execution_id"]
            .as_i64()
            .context("run-now gave no execution_id")?;
        let deadline = started + CHANGE_LIMIT;
        // B re-reads the row when told of it, so a run that ended meanwhile arrives ended.
        let first = stream.until(deadline, |e| e["id"] == id).await?;
        to_event.push(started.elapsed());
        to_status.push(poller.await.context("the status poller")??);
        // The run ends before the next one is asked for.
        if first["status"] == "running" {
            stream
                .until(deadline, |e| e["id"] == id && e["status"] != "running")
                .await?;
        }
    }
    let (peak_kib, rss_after) = memory_kib(b.pid()).unwrap_or((0, 0));

    let stop_b = b.stop(Duration::from_secs(30)).await?;
    let stop_a = a.stop(Duration::from_secs(30)).await?;
    let mut starved = 0;
    for task in idle {
        if task.await.unwrap_or(0) < ctx.live_changes {
            starved += 1;
        }
    }

    let mut event = Figure::new("live A→B event");
    summary(&mut event, "event", to_event);
    event.detail(format!(
        "from sending POST …/run to A until the run's `execution` event arrived on B's stream, \
         while B fed {} other streams; one run at a time, each awaited to its end",
        ctx.live_streams
    ));
    let mut status = Figure::new("live A→B /jobs/status");
    summary(&mut status, "status", to_status);
    status.detail(format!(
        "from sending POST …/run to A until B's /jobs/status showed the run (polled every {} ms \
         on one keep-alive connection: the figures include up to that much polling delay)",
        STATUS_POLL.as_millis()
    ));
    let mut memory = Figure::new(format!("live B with {} streams", ctx.live_streams + 1));
    memory
        .field("rss_ready", report::mib(rss_ready))
        .field("rss_streams", report::mib(rss_streams))
        .field("rss_after", report::mib(rss_after))
        .field("rss_peak", report::mib(peak_kib));
    memory.goal(&[(peak_kib < 100 * 1024, "RSS peak < 100 MiB".to_owned())]);
    if starved > 0 {
        memory.fail(format!(
            "{starved} stream(s) carried fewer than {} execution events",
            ctx.live_changes
        ));
    }
    for (server, status) in [(&a, stop_a), (&b, stop_b)] {
        if !status.success() {
            memory.fail(format!("serve exited with {status} after SIGTERM"));
        } else {
            server.remove_log();
        }
    }
    for figure in [&event, &status, &memory] {
        figure.print();
    }
    Ok(vec![event, status, memory])
}
