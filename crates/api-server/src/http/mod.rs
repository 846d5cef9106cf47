//! The HTTP API (contract §6): routes, JSON errors and bearer auth.

pub mod auth;
mod console;
pub mod dashboard;
mod error;
mod events;
mod executions;
mod jobs;
pub mod metrics;
pub mod openapi;
mod probes;
mod status;
/// The JSON shapes of executions and jobs, shared with the live view's event streams.
pub use live_view::views;

use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{middleware, web, App};
use jobs_core::{Registry, Runner};

pub use auth::Access;
pub use error::ApiError;
pub(crate) use jobs::paused_run_note;

/// What every handler may use.
pub struct AppState {
    /// Database pool.
    pub pool: db::Pool,
    /// The registered jobs.
    pub registry: Arc<Registry>,
    /// The runner, for run-now.
    pub runner: Arc<Runner>,
    /// The accepted tokens (`ADMIN_TOKEN`, `VIEWER_TOKEN`, `METRICS_TOKEN`).
    pub access: Access,
    /// The jobs' state in memory, and the event streams.
    pub live: Arc<crate::live::LiveView>,
}

/// Largest JSON body accepted.
pub(crate) const MAX_JSON_BODY: usize = 16 * 1024;

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
        .app_data(web::Data::new(probes::ProbeCache::default()))
        .app_data(web::QueryConfig::default().error_handler(error::query_error))
        .app_data(
            web::JsonConfig::default()
                .limit(MAX_JSON_BODY)
                .error_handler(error::json_error),
        )
        .app_data(web::PathConfig::default().error_handler(error::path_error))
        .wrap(middleware::from_fn(auth::loopback_only))
        .wrap(middleware::from_fn(metrics::track_requests))
        .wrap(middleware::NormalizePath::trim())
        .service(get("/", dashboard::index))
        .service(get("/assets/{name}", dashboard::asset))
        .service(get("/healthz", status::healthz))
        .service(get("/readyz", status::readyz))
        .service(
            get("/metrics", metrics::metrics)
                .wrap(middleware::from_fn(auth::require_metrics_reader)),
        )
        .service(internal())
        .default_service(web::to(error::not_found))
}

/// Everything under `/internal`. The scope, not each route, carries the token check, so
/// the check applies to whatever the router matched (however the path was spelled) and a
/// route registered in [`internal_api_v1`] cannot be reached without it.
fn internal() -> impl actix_web::dev::HttpServiceFactory {
    web::scope("/internal")
        .wrap(middleware::from_fn(auth::require_role))
        .service(web::scope("/api/v1").configure(internal_api_v1))
}

/// The routes of `/internal/api/v1` (paths relative to it). Register every new internal
/// route here; handlers learn who asked from [`auth::actor`].
fn internal_api_v1(cfg: &mut web::ServiceConfig) {
    cfg.service(get("/jobs/status", status::jobs_status))
        .service(get("/jobs", jobs::list_jobs))
        .service(get("/jobs/executions", executions::history))
        .service(get("/jobs/executions/{id}", executions::execution))
        .service(post("/jobs/{job_name}/run", web::post().to(jobs::run_job)))
        .service(post(
            "/jobs/executions/{id}/cancel",
            web::post().to(executions::cancel),
        ))
        .service(post(
            "/jobs/{job_name}/pause",
            web::post().to(console::pause),
        ))
        .service(post(
            "/jobs/{job_name}/resume",
            web::post().to(console::resume),
        ))
        .service(get("/jobs/{job_name}/trends", console::trends))
        .service(get_only("/events", web::get().to(events::events)))
        .service(get("/jobs/executions/{id}/events", console::events))
        .service(get("/workers", console::workers))
        .service(get("/session", console::session))
        .service(get("/openapi.json", openapi::openapi_json));
}

/// A GET route that answers HEAD too, with the same handler (actix sends only the head
/// of the answer); other methods answer 405 with `Allow` and the JSON error body.
fn get<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    web::resource(path)
        .route(web::get().to(handler.clone()))
        .route(web::head().to(handler))
        .default_service(web::to(|req| error::method_not_allowed(req, "GET, HEAD")))
}

/// A GET route without HEAD: an event stream, whose answer never ends.
fn get_only(path: &str, route: actix_web::Route) -> actix_web::Resource {
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
