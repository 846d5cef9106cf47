//! The HTTP API (contract §6): routes, JSON errors and bearer auth.

mod auth;
pub mod dashboard;
mod error;
mod events;
mod executions;
mod jobs;
pub mod metrics;
pub mod openapi;
mod status;
pub mod views;

use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{middleware, web, App};
use jobs_core::{Registry, Runner};

use crate::config::Secret;

pub use error::ApiError;

/// What every handler may use.
pub struct AppState {
    /// Database pool.
    pub pool: db::Pool,
    /// The execution log (same database).
    pub log: Arc<db::PgExecutionLog>,
    /// The registered jobs.
    pub registry: Arc<Registry>,
    /// The runner, for run-now.
    pub runner: Arc<Runner>,
    /// `ADMIN_TOKEN`.
    pub admin_token: Option<Secret>,
    /// The jobs' state in memory, and the event streams.
    pub live: Arc<crate::live::LiveView>,
}

/// Largest JSON body accepted.
const MAX_JSON_BODY: usize = 16 * 1024;

/// The application: routes, error handlers and auth, for the server and for tests.
pub fn build_app(
    state: web::Data<AppState>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(state)
        .app_data(web::QueryConfig::default().error_handler(error::query_error))
        .app_data(
            web::JsonConfig::default()
                .limit(MAX_JSON_BODY)
                .error_handler(error::json_error),
        )
        .app_data(web::PathConfig::default().error_handler(error::path_error))
        .wrap(middleware::from_fn(auth::require_token))
        .wrap(middleware::from_fn(metrics::track_requests))
        .wrap(middleware::NormalizePath::trim())
        .service(get("/", web::get().to(dashboard::index)))
        .service(get("/assets/{name}", web::get().to(dashboard::asset)))
        .service(get("/healthz", web::get().to(status::healthz)))
        .service(get("/readyz", web::get().to(status::readyz)))
        .service(get("/metrics", web::get().to(metrics::metrics)))
        .service(get(
            "/internal/api/v1/jobs/status",
            web::get().to(status::jobs_status),
        ))
        .service(get("/internal/api/v1/jobs", web::get().to(jobs::list_jobs)))
        .service(get(
            "/internal/api/v1/jobs/executions",
            web::get().to(executions::history),
        ))
        .service(get(
            "/internal/api/v1/jobs/executions/{id}",
            web::get().to(executions::execution),
        ))
        .service(post(
            "/internal/api/v1/jobs/{job_name}/run",
            web::post().to(jobs::run_job),
        ))
        .service(get(
            "/internal/api/v1/events",
            web::get().to(events::events),
        ))
        .service(get(
            "/internal/api/v1/openapi.json",
            web::get().to(openapi::openapi_json),
        ))
        .default_service(web::to(error::not_found))
}

/// A GET route; other methods answer 405 with `Allow` and the JSON error body.
fn get(path: &str, route: actix_web::Route) -> actix_web::Resource {
    web::resource(path)
        .route(route)
        .default_service(web::to(|req| error::method_not_allowed(req, "GET")))
}

/// A POST route; other methods answer 405 with `Allow` and the JSON error body.
fn post(path: &str, route: actix_web::Route) -> actix_web::Resource {
    web::resource(path)
        .route(route)
        .default_service(web::to(|req| error::method_not_allowed(req, "POST")))
}
