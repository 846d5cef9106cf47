//! What the deployment files in `deploy/` and a log pipeline rely on, checked against the
//! real binary and a real database: the Grafana board and the alert rules name only metrics
//! a running server exports, the backlog reaches the API and `/metrics`, and
//! `LOG_FORMAT=json` prints one JSON object per line.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use db::testing::TestDatabase;
use diesel_async::RunQueryDsl;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::server::{eventually, ServerProcess};
use crate::support::sql;

fn repo_file(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative)
}

/// Deepgram answering the project list with none: every cost_update run succeeds quickly.
async fn deepgram_without_projects() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/projects"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"projects": []})))
        .mount(&server)
        .await;
    server
}

/// Metric names of a Prometheus text exposition (`_bucket`, `_sum`, `_count` included).
fn exported_names(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// PromQL words that are not metric names.
const PROMQL_WORDS: &[&str] = &[
    "sum",
    "max",
    "min",
    "avg",
    "count",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "rate",
    "increase",
    "irate",
    "delta",
    "deriv",
    "time",
    "histogram_quantile",
    "min_over_time",
    "max_over_time",
    "avg_over_time",
    "absent",
    "label_values",
    "topk",
    "bottomk",
    "clamp_min",
    "clamp_max",
    "humanizeDuration",
    "inf",
    "nan",
];

/// Metric names used by a PromQL expression: identifiers outside label matchers, strings,
/// ranges and grouping clauses, less functions and keywords.
fn metric_names(expr: &str) -> BTreeSet<String> {
    // A Grafana variable's `label_values(metric, label)`: only the metric is one.
    let expr = match expr.trim().strip_prefix("label_values(") {
        Some(args) => args.split([',', ')']).next().unwrap_or_default(),
        None => expr,
    };
    let mut names = BTreeSet::new();
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    let mut grouping = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '{' | '[' | '"' => {
                // Skip to the matching close: label matchers, ranges and strings hold no
                // metric names.
                let close = match c {
                    '{' => '}',
                    '[' => ']',
                    _ => '"',
                };
                i += 1;
                while i < chars.len() && chars[i] != close {
                    if chars[i] == '"' && close != '"' {
                        i += 1;
                        while i < chars.len() && chars[i] != '"' {
                            i += 1;
                        }
                    }
                    i += 1;
                }
                i += 1;
            }
            '(' if grouping => {
                while i < chars.len() && chars[i] != ')' {
                    i += 1;
                }
                grouping = false;
                i += 1;
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                if matches!(
                    word.as_str(),
                    "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
                ) {
                    grouping = true;
                } else if !PROMQL_WORDS.contains(&word.as_str()) && !word.starts_with('$') {
                    names.insert(word);
                }
            }
            c if c.is_ascii_digit() => {
                // Numbers and durations (`1d`, `2.5`, `1e3`).
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            '$' => {
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    names
}

/// Every `expr` of the Grafana board, and the queries of its variables.
fn board_expressions(board: &serde_json::Value) -> Vec<String> {
    fn walk(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, v) in map {
                    match (key.as_str(), v) {
                        ("expr" | "definition", serde_json::Value::String(s)) => {
                            out.push(s.clone())
                        }
                        _ => walk(v, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(board, &mut out);
    out
}

/// Every `expr:` of the alert rules (block scalars included).
fn rule_expressions(rules: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut lines = rules.lines().peekable();
    while let Some(line) = lines.next() {
        let Some((indent, rest)) = line.split_once("expr:") else {
            continue;
        };
        let rest = rest.trim();
        if rest != "|" && rest != ">-" {
            out.push(rest.to_owned());
            continue;
        }
        let mut block = String::new();
        while let Some(next) = lines.peek() {
            let deeper = next.len() > indent.len() + 2
                && next[..indent.len() + 2].trim().is_empty()
                || next.trim().is_empty();
            if !deeper {
                break;
            }
            block.push_str(next);
            block.push('\n');
            lines.next();
        }
        out.push(block);
    }
    out
}

#[test]
fn the_metric_name_extraction_ignores_labels_functions_and_ranges() {
    let names = metric_names(
        r#"histogram_quantile(0.95, sum by (job, le) (rate(job_duration_seconds_bucket{job=~"$job",x="a{b}"}[1d]))) > bool max by (job) (job_last_success_timestamp_seconds offset 1d) and on (job) up{job="background-jobs"} == 1"#,
    );
    let expected: BTreeSet<String> = [
        "job_duration_seconds_bucket",
        "job_last_success_timestamp_seconds",
        "up",
    ]
    .map(str::to_owned)
    .into();
    assert_eq!(names, expected);
    let exprs = rule_expressions("      - alert: A\n        expr: |\n          a_metric\n            > b_metric\n        for: 5m\n      - alert: B\n        expr: c_metric > 0\n");
    assert_eq!(exprs.len(), 2);
    assert!(exprs[0].contains("a_metric") && exprs[0].contains("b_metric"));
    assert!(!exprs[0].contains("for"));
    assert_eq!(exprs[1], "c_metric > 0");
}

/// Starts a server whose jobs run every second (cost_update succeeds, audio_cleanup fails
/// against an unreachable Storage), so that every series exists, and compares the metric
/// names of the board and of the alert rules with a real scrape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grafana_board_and_alert_rules_use_only_metrics_the_server_exports() {
    let board_text = std::fs::read_to_string(repo_file("deploy/grafana/background-jobs.json"))
        .expect("the Grafana board");
    let board: serde_json::Value =
        serde_json::from_str(&board_text).expect("the Grafana board is valid JSON");
    let rules = std::fs::read_to_string(repo_file("deploy/prometheus/alerts.yml")).unwrap();
    let mut used = BTreeSet::new();
    let board_exprs = board_expressions(&board);
    let rule_exprs = rule_expressions(&rules);
    assert!(board_exprs.len() >= 10, "{board_exprs:?}");
    assert!(rule_exprs.len() >= 5, "{rule_exprs:?}");
    for expr in board_exprs.iter().chain(&rule_exprs) {
        used.extend(metric_names(expr));
    }
    // `up` is Prometheus's own series about each target, not the server's.
    used.remove("up");
    for required in ["job_backlog", "job_running_seconds", "job_executions_total"] {
        assert!(used.contains(required), "{required} not used: {used:?}");
    }

    let db = TestDatabase::new().await;
    sql(
        &db,
        "INSERT INTO transcriptions (created_at, audio_file_path, stt_provider_request_id) \
         VALUES (now() - interval '40 days', 'audio/u1/a.webm', 'a847f427-4ad5-4d67-9b95-db801e58251c')",
    )
    .await;
    let deepgram = deepgram_without_projects().await;
    let server = ServerProcess::start(&[
        ("DATABASE_URL", db.url()),
        ("DEEPGRAM_API_KEY", "dg-test-key"),
        ("DEEPGRAM_API_URL", &deepgram.uri()),
        ("SUPABASE_URL", "http://127.0.0.1:1"),
        ("SUPABASE_SERVICE_ROLE_KEY", "sb-test-key"),
        ("SUPABASE_MAX_ATTEMPTS", "1"),
        ("COST_UPDATE_SCHEDULE", "* * * * * *"),
        ("AUDIO_CLEANUP_SCHEDULE", "* * * * * *"),
        ("JOB_MAX_ATTEMPTS", "1"),
        ("BACKLOG_REFRESH_SECS", "1"),
    ])
    .await;

    // Wait for the runs that create the last series; a name the server never exports
    // stays missing until the limit and is reported.
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let mut missing: Vec<String>;
    loop {
        let scrape = match client.get(server.url("/metrics")).send().await {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let exported = exported_names(&scrape);
        missing = used.difference(&exported).cloned().collect();
        if missing.is_empty() || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        missing.is_empty(),
        "the board or the rules use metrics the server does not export: {missing:?}\n{}",
        server.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backlog_of_each_job_is_in_the_jobs_api_and_the_metrics() {
    let db = TestDatabase::new().await;
    // audio_cleanup: two rows past the retention; not counted: a recent row, a deleted
    // one, one without audio.
    sql(
        &db,
        "INSERT INTO transcriptions (created_at, audio_file_path, audio_deleted_at) VALUES \
         (now() - interval '40 days', 'audio/a.webm', NULL), \
         (now() - interval '31 days', 'audio/b.webm', NULL), \
         (now() - interval '2 days', 'audio/c.webm', NULL), \
         (now() - interval '40 days', 'audio/d.webm', now()), \
         (now() - interval '40 days', NULL, NULL)",
    )
    .await;
    // cost_update: three rows to price; not counted: priced, given up, no request id.
    sql(
        &db,
        "INSERT INTO transcriptions (stt_provider_request_id, audio_cost_usd, cost_gave_up_at) VALUES \
         ('r1', NULL, NULL), ('r2', NULL, NULL), ('r3', NULL, NULL), \
         ('r4', 0.5, NULL), ('r5', NULL, now()), (NULL, NULL, NULL)",
    )
    .await;
    let server =
        ServerProcess::start(&[("DATABASE_URL", db.url()), ("BACKLOG_REFRESH_SECS", "1")]).await;

    let backlog_of = |jobs: &serde_json::Value, name: &str| -> Option<(u64, bool)> {
        let job = jobs["data"]
            .as_array()?
            .iter()
            .find(|j| j["job_name"] == name)?;
        Some((job["backlog"].as_u64()?, job["backlog_capped"].as_bool()?))
    };
    let jobs_url = server.url("/internal/api/v1/jobs");
    let jobs: serde_json::Value = eventually(Duration::from_secs(30), "a backlog reading", || {
        let url = jobs_url.clone();
        async move {
            let jobs: serde_json::Value = reqwest::get(url).await.ok()?.json().await.ok()?;
            jobs["data"][1]["backlog"].as_u64().map(|_| jobs)
        }
    })
    .await;
    // Disabled jobs (no credentials here) still show what waits for them.
    assert_eq!(
        backlog_of(&jobs, "audio_cleanup"),
        Some((2, false)),
        "{jobs}"
    );
    assert_eq!(backlog_of(&jobs, "cost_update"), Some((3, false)), "{jobs}");
    assert!(jobs["data"][0]["backlog_measured_at"].is_string(), "{jobs}");

    let scrape = reqwest::get(server.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        scrape.contains("job_backlog{job=\"audio_cleanup\"} 2"),
        "{scrape}"
    );
    assert!(
        scrape.contains("job_backlog{job=\"cost_update\"} 3"),
        "{scrape}"
    );
    assert!(
        scrape.contains("job_running_seconds{job=\"cost_update\"} 0"),
        "{scrape}"
    );

    // New work shows at the next refresh, without a request triggering a count.
    sql(
        &db,
        "INSERT INTO transcriptions (stt_provider_request_id) VALUES ('r6')",
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "the new row in the backlog",
        || {
            let url = jobs_url.clone();
            async move {
                let jobs: serde_json::Value = reqwest::get(url).await.ok()?.json().await.ok()?;
                (backlog_of(&jobs, "cost_update") == Some((4, false))).then_some(())
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_format_json_prints_one_object_per_line_naming_the_run() {
    let db = TestDatabase::new().await;
    let deepgram = deepgram_without_projects().await;
    let output = Command::new(env!("CARGO_BIN_EXE_api-server"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "info")
        .env("LOG_FORMAT", "json")
        .env("DATABASE_URL", db.url())
        .env("DEEPGRAM_API_KEY", "dg-json-secret-key")
        .env("DEEPGRAM_API_URL", deepgram.uri())
        .env("ADMIN_TOKEN", "admin-json-secret-token")
        .current_dir(std::env::temp_dir())
        .args(["run-job", "cost_update"])
        .output()
        .expect("run api-server");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");
    for secret in ["dg-json-secret-key", "admin-json-secret-token"] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{secret} leaked"
        );
    }

    let mut conn = db.connect().await;
    #[derive(diesel::QueryableByName)]
    struct Exec {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        id: i64,
    }
    let exec: Exec = diesel::sql_query("SELECT id::bigint AS id FROM job_executions")
        .get_result(&mut conn)
        .await
        .unwrap();

    let mut lines = Vec::new();
    for line in stdout.lines() {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON object ({e}): {line:?}\n{stdout}"));
        for key in ["ts", "level", "target", "message"] {
            assert!(value[key].is_string(), "{key} missing: {line}");
        }
        assert!(
            chrono::DateTime::parse_from_rfc3339(value["ts"].as_str().unwrap()).is_ok(),
            "{line}"
        );
        lines.push(value);
    }
    let find = |prefix: &str| {
        lines
            .iter()
            .find(|l| l["message"].as_str().unwrap().starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting {prefix:?}:\n{stdout}"))
    };
    for prefix in [
        "[Job] Starting cost update (scheduled: 0 3 * * *)",
        "[Job] ✅ Cost update completed: 0 updated",
    ] {
        let line = find(prefix);
        assert_eq!(line["level"], "info", "{line}");
        assert_eq!(line["job"], "cost_update", "{line}");
        assert_eq!(line["execution_id"], exec.id, "{line}");
    }
}

#[test]
fn an_unknown_log_format_exits_2_naming_the_variable() {
    let output = Command::new(env!("CARGO_BIN_EXE_api-server"))
        .env_clear()
        .env("LOG_FORMAT", "yaml")
        .current_dir(std::env::temp_dir())
        .arg("jobs")
        .output()
        .expect("run api-server");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("LOG_FORMAT"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_server_shows_the_last_real_runs_figures_when_a_dry_run_came_after() {
    let db = TestDatabase::new().await;
    let storage = crate::support::storage::storage(Duration::ZERO).await;
    let uri = storage.uri();
    let vars = crate::support::server_vars(&db, &uri);
    let (code, out, err) =
        crate::support::server::run(crate::support::server::api_server(&vars).arg("migrate"));
    assert_eq!(code, 0, "{out}{err}");
    // A real run, then a dry run and a run still going: neither is the last real run.
    sql(
        &db,
        "INSERT INTO job_executions (job_name, status, started_at, completed_at, duration_ms, stats, dry_run, worker_id) VALUES \
         ('audio_cleanup', 'success', now() - interval '3 hours', now() - interval '3 hours' + interval '7046 milliseconds', 7046, '{\"deleted\": 12}', false, 'w'), \
         ('audio_cleanup', 'success', now() - interval '2 hours', now() - interval '2 hours' + interval '5 milliseconds', 5, '{\"would_delete\": 3}', true, 'w')",
    )
    .await;

    let server = ServerProcess::start(&vars).await;
    let duration = eventually(Duration::from_secs(30), "the last-run gauges", || async {
        server
            .metric("job_last_duration_seconds{job=\"audio_cleanup\"}")
            .await
    })
    .await;
    assert_eq!(duration, "7.046");
    assert_eq!(
        server
            .metric("job_last_run_items{job=\"audio_cleanup\",stat=\"deleted\"}")
            .await
            .as_deref(),
        Some("12")
    );
    assert_eq!(
        server
            .metric("job_last_run_items{job=\"audio_cleanup\",stat=\"would_delete\"}")
            .await,
        None
    );
}
