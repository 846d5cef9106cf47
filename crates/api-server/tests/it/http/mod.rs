//! The HTTP API against a real PostgreSQL database, through the same application the
//! server runs.

mod console;
mod ops;
mod status;

use std::sync::Arc;

use actix_web::{test, web};
use api_server::app::Services;
use api_server::config::{Config, Vars};
use api_server::http::{build_app, AppState};
use db::testing::TestDatabase;

/// A migrated database and the application state over it.
pub struct TestApp {
    pub db: TestDatabase,
    pub state: web::Data<AppState>,
}

impl TestApp {
    pub async fn new(extra: &[(&str, &str)]) -> Self {
        Self::build(extra, true).await
    }

    /// A server whose live view has not been read from the database yet.
    pub async fn unloaded() -> Self {
        Self::build(&[], false).await
    }

    /// Reads the live view from the database, as a server does at start.
    pub async fn load(&self) {
        api_server::live::feed::resync(&self.state.live, &self.state.pool)
            .await
            .expect("load the live view");
    }

    async fn build(extra: &[(&str, &str)], load: bool) -> Self {
        let db = TestDatabase::new().await;
        let mut pairs: Vec<(&str, &str)> =
            vec![("DATABASE_URL", db.url()), ("DATABASE_POOL_SIZE", "4")];
        pairs.extend_from_slice(extra);
        let config = Config::from_vars(Vars::from_pairs(pairs)).expect("test config");
        let services = Services::prepare(config).expect("services");
        let runner = services.runner("test-host:0".into());
        // Loaded here and after every `exec`; the feed that follows other servers' writes
        // is tested with real server processes (the `live` module).
        let (live, _feed) = services.live_view().expect("live view");
        let state = web::Data::new(AppState {
            pool: services.pool.clone(),
            registry: Arc::clone(&services.registry),
            runner,
            access: api_server::http::Access::from_config(&services.config),
            live,
        });
        let app = Self { db, state };
        if load {
            app.load().await;
        }
        app
    }

    /// Sends a request and returns status, headers and JSON body.
    pub async fn call(
        &self,
        req: test::TestRequest,
    ) -> (
        actix_web::http::StatusCode,
        actix_web::http::header::HeaderMap,
        serde_json::Value,
    ) {
        let app = test::init_service(build_app(self.state.clone())).await;
        let resp = test::call_service(&app, req.to_request()).await;
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = test::read_body(resp).await;
        let body = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
        };
        (status, headers, body)
    }

    pub async fn exec(&self, sql: &str) {
        use diesel_async::RunQueryDsl;
        let mut conn = self.db.connect().await;
        diesel::sql_query(sql).execute(&mut conn).await.unwrap();
        api_server::live::feed::resync(&self.state.live, &self.state.pool)
            .await
            .expect("re-read the live view");
    }
}
