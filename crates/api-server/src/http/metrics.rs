//! Prometheus metrics: process counters through the `metrics` facade, and job gauges read
//! from the database at scrape time, so that every replica reports the same, true state.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};
use jobs_core::{async_trait, RegisteredJob, RunObserver, RunReport};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use super::probes::{fresh, ProbeCache, GAUGES_TTL, PROBE_TIMEOUT};
use super::{ApiError, AppState};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process's Prometheus recorder, installed on first use.
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("http_request_duration_seconds".into()),
                    &[
                        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                    ],
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("job_duration_seconds".into()),
                        &[1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0],
                    )
                });
            let handle = builder.and_then(|b| b.install_recorder());
            match handle {
                Ok(handle) => {
                    describe();
                    Some(handle)
                }
                Err(e) => {
                    log::warn!("metrics recorder not installed: {e}");
                    None
                }
            }
        })
        .as_ref()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "job_executions_total",
        "Executions finished by this server, by job and status"
    );
    describe_histogram!(
        "job_duration_seconds",
        Unit::Seconds,
        "Duration of executions finished by this server"
    );
    describe_gauge!(
        "job_last_duration_seconds",
        Unit::Seconds,
        "Duration of each job's latest finished execution"
    );
    describe_gauge!(
        "job_last_success_timestamp_seconds",
        Unit::Seconds,
        "Unix time of each job's latest successful execution"
    );
    describe_gauge!(
        "job_last_run_items",
        "Counters of each job's latest finished execution, by stat key"
    );
    describe_gauge!(
        "job_running",
        "Executions of each job running now, on any server"
    );
    describe_gauge!(
        "database_up",
        "1 when this server's latest refresh of the job gauges reached the database, 0 when it did not (they then keep their last values)"
    );
    describe_gauge!(
        "job_enabled",
        "1 when the job runs on its schedule, 0 when disabled or paused"
    );
    describe_gauge!(
        "job_paused_seconds",
        Unit::Seconds,
        "How long each job has been paused at run time; 0 when it is not paused"
    );
    describe_gauge!(
        "job_backlog",
        "Items waiting for each job, as last measured (capped: see the README)"
    );
    describe_gauge!(
        "job_running_seconds",
        Unit::Seconds,
        "Age of each job's oldest running execution, on any server; 0 when none runs"
    );
    describe_gauge!(
        "job_last_failure_timestamp_seconds",
        Unit::Seconds,
        "Unix time of each job's latest failed execution"
    );
    describe_gauge!(
        "job_schedule_interval_seconds",
        Unit::Seconds,
        "Longest gap between each job's next cron slots"
    );
    describe_gauge!(
        "job_timeout_seconds",
        Unit::Seconds,
        "Run time after which an execution of each job is cancelled"
    );
    describe_gauge!(
        "scheduler_lag_seconds",
        Unit::Seconds,
        "Delay between a cron slot and the start of its execution"
    );
    describe_counter!(
        "http_requests_total",
        "HTTP requests by method, route and status"
    );
    describe_histogram!(
        "http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request latency by method and route"
    );
}

/// Records every finished execution in the process counters.
#[derive(Debug, Default)]
pub struct MetricsObserver;

#[async_trait]
impl RunObserver for MetricsObserver {
    async fn finished(&self, job: &RegisteredJob, report: &RunReport) {
        let name = job.name().to_owned();
        metrics::counter!(
            "job_executions_total",
            "job" => name.clone(),
            "status" => report.status.as_str()
        )
        .increment(1);
        metrics::histogram!("job_duration_seconds", "job" => name.clone())
            .record(report.elapsed.as_secs_f64());
        // A slot's first attempt: a retry starts late by its backoff, by design.
        if let (Some(slot), Some(record), 1) =
            (report.scheduled_for, &report.record, report.attempt)
        {
            let lag = (record.started_at - slot).num_milliseconds() as f64 / 1000.0;
            metrics::gauge!("scheduler_lag_seconds", "job" => name).set(lag.max(0.0));
        }
    }
}

/// Counts requests and their latency by matched route and standard method (never by raw
/// path or a made-up method, so that no request can blow up the label set).
pub async fn track_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    let started = Instant::now();
    let method = method_label(req.method()).to_owned();
    let response = next.call(req).await?;
    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let status = response.status().as_u16().to_string();
    metrics::counter!(
        "http_requests_total",
        "method" => method.clone(),
        "route" => route.clone(),
        "status" => status
    )
    .increment(1);
    metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    Ok(response)
}

/// The method as a label: one of HTTP's own, or `other` for any other token a client
/// sends (actix accepts every token as a method).
fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    const STANDARD: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::CONNECT,
        Method::OPTIONS,
        Method::TRACE,
        Method::PATCH,
    ];
    STANDARD
        .iter()
        .find(|m| *m == method)
        .map_or("other", Method::as_str)
}

/// Prometheus text format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    responses(
        (status = 200, description = "Prometheus text exposition format", body = String, content_type = "text/plain"),
        (status = 401, description = "METRICS_TOKEN is set and the bearer token sent is not it", body = super::views::ErrorBody),
    )
)]
pub async fn metrics(
    state: web::Data<AppState>,
    cache: web::Data<ProbeCache>,
) -> Result<HttpResponse, ApiError> {
    let Some(handle) = handle() else {
        return Err(ApiError::internal(
            "metrics",
            "the metrics recorder is not installed",
        ));
    };
    // Gauges of the jobs' true state, from the database every server shares; refreshed by
    // one scrape at a time, at most once per GAUGES_TTL, within PROBE_TIMEOUT.
    let mut refreshed = cache.gauges.lock().await;
    if !refreshed.is_some_and(|at| fresh(at, GAUGES_TTL)) {
        let reached = tokio::time::timeout(PROBE_TIMEOUT, refresh_gauges(&state))
            .await
            .unwrap_or(false);
        metrics::gauge!("database_up").set(if reached { 1.0 } else { 0.0 });
        *refreshed = Some(Instant::now());
    }
    drop(refreshed);
    handle.run_upkeep();
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(handle.render()))
}

/// Sets the gauges of the jobs' state from the database; false when it could not be
/// read (the gauges keep their last values).
async fn refresh_gauges(state: &AppState) -> bool {
    let Ok(mut conn) = state.pool.get().await else {
        return false;
    };
    let Ok(running) = db::executions::running_counts(&mut conn).await else {
        return false;
    };
    let running_for = db::monitoring::running_seconds(&mut conn)
        .await
        .unwrap_or_default();
    let failures = db::monitoring::last_failures(&mut conn)
        .await
        .unwrap_or_default();
    let paused = db::controls::paused(&mut conn).await.unwrap_or_default();
    let now = chrono::Utc::now();
    for job in state.registry.iter() {
        let name = job.name().to_owned();
        // Paused at run time, a job does not run on its schedule either: the alerts
        // that expect runs (overdue, never succeeded) skip it.
        let pause = paused.iter().find(|p| p.job_name == name);
        // A pause stops the alerts that expect runs: this one shows a pause forgotten.
        let paused_for = pause.map_or(0.0, |p| p.seconds);
        let paused = pause.is_some();
        metrics::gauge!("job_paused_seconds", "job" => name.clone()).set(paused_for);
        metrics::gauge!("job_enabled", "job" => name.clone()).set(if job.is_enabled() && !paused {
            1.0
        } else {
            0.0
        });
        let n = running
            .iter()
            .find(|(j, _)| *j == name)
            .map_or(0, |(_, n)| *n);
        metrics::gauge!("job_running", "job" => name.clone()).set(n as f64);
        job_gauges(job, &name, &running_for, &failures, now);
        // A dry run changed nothing: the figures are the last real run's, read as such
        // (the latest execution may be a dry run or still running).
        if let Ok(Some(last)) = db::executions::last_finished(&mut conn, &name).await {
            if let Some(ms) = last.duration_ms {
                metrics::gauge!("job_last_duration_seconds", "job" => name.clone())
                    .set(ms as f64 / 1000.0);
            }
            last_run_items(&name, &last.stats);
        }
        if let Ok(Some(success)) = db::executions::last_success(&mut conn, &name).await {
            let at = success.completed_at.unwrap_or(success.started_at);
            metrics::gauge!("job_last_success_timestamp_seconds", "job" => name)
                .set(at.timestamp_millis() as f64 / 1000.0);
        }
    }
    true
}

/// `job_last_run_items` of a job's latest finished execution. A key an earlier execution
/// had and this one lacks is set to 0, not left at the old run's count: a series cannot be
/// removed, and a stale one would describe a run that is no longer the latest.
fn last_run_items(job: &str, stats: &serde_json::Value) {
    static SHOWN: OnceLock<Mutex<HashMap<String, BTreeSet<String>>>> = OnceLock::new();
    let current: Vec<(&String, f64)> = stats
        .as_object()
        .map(|stats| {
            stats
                .iter()
                .filter_map(|(key, value)| value.as_f64().map(|v| (key, v)))
                .collect()
        })
        .unwrap_or_default();
    let mut shown = SHOWN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let keys = shown.entry(job.to_owned()).or_default();
    for stale in keys.iter() {
        if !current.iter().any(|(key, _)| *key == stale) {
            metrics::gauge!("job_last_run_items", "job" => job.to_owned(), "stat" => stale.clone())
                .set(0.0);
        }
    }
    for (key, value) in current {
        metrics::gauge!("job_last_run_items", "job" => job.to_owned(), "stat" => key.clone())
            .set(value);
        keys.insert(key.clone());
    }
}

/// The gauges of one job for alerting: backlog (the kept reading, never measured here),
/// age of its running execution, latest failure, schedule interval and timeout.
fn job_gauges(
    job: &RegisteredJob,
    name: &str,
    running_for: &[(String, f64)],
    failures: &[(String, chrono::DateTime<chrono::Utc>)],
    now: chrono::DateTime<chrono::Utc>,
) {
    let label = name.to_owned();
    if let Some(reading) = job.backlog() {
        metrics::gauge!("job_backlog", "job" => label.clone()).set(reading.backlog.count as f64);
    }
    let seconds = running_for
        .iter()
        .find(|(j, _)| j == name)
        .map_or(0.0, |(_, s)| *s);
    metrics::gauge!("job_running_seconds", "job" => label.clone()).set(seconds);
    if let Some((_, at)) = failures.iter().find(|(j, _)| j == name) {
        metrics::gauge!("job_last_failure_timestamp_seconds", "job" => label.clone())
            .set(at.timestamp_millis() as f64 / 1000.0);
    }
    if let Some(interval) = job.schedule.typical_interval(now) {
        metrics::gauge!("job_schedule_interval_seconds", "job" => label.clone())
            .set(interval.num_milliseconds() as f64 / 1000.0);
    }
    if let Some(timeout) = job.policy.timeout {
        metrics::gauge!("job_timeout_seconds", "job" => label).set(timeout.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_the_latest_run_lacks_reads_0_not_an_older_runs_count() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            last_run_items(
                "items_unit_job",
                &serde_json::json!({"deleted": 3, "failed": 6}),
            );
            last_run_items(
                "items_unit_job",
                &serde_json::json!({"deleted": 5, "note": "x"}),
            );
        });
        let text = handle.render();
        for series in [
            "job_last_run_items{job=\"items_unit_job\",stat=\"deleted\"} 5",
            "job_last_run_items{job=\"items_unit_job\",stat=\"failed\"} 0",
        ] {
            assert!(text.contains(series), "missing {series} in\n{text}");
        }
        assert!(!text.contains("stat=\"note\""), "{text}");
    }
}
