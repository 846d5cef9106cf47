//! The OpenAPI 3 description, generated from the handlers and types.

use actix_web::HttpResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{console, events, executions, jobs, metrics, status, views};

/// The API description served at `/internal/api/v1/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "background-jobs",
        description = "Nightly maintenance jobs of the speech-to-text product: status, history, run-now, metrics."
    ),
    paths(
        status::jobs_status,
        status::healthz,
        status::readyz,
        jobs::list_jobs,
        jobs::run_job,
        executions::history,
        executions::execution,
        executions::cancel,
        events::events,
        metrics::metrics,
        console::pause,
        console::resume,
        console::events,
        console::trends,
        console::workers,
        console::session,
    ),
    components(schemas(
        views::ExecutionStatus,
        views::ExecutionView,
        views::JobView,
        views::ExecutionPage,
        views::RunStarted,
        views::CancelRequested,
        views::ErrorBody,
        views::ErrorDetail,
        views::StatusView,
        views::TriggerView,
        views::Health,
        views::Ready,
        views::JobControlView,
        views::EventView,
        views::TrendDay,
        views::WorkerView,
        console::PauseBody,
        console::SessionView,
    )),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// `GET /internal/api/v1/openapi.json`
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
