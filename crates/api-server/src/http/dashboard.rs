//! The Internal Admin Dashboard (`GET /`): one HTML page, its stylesheet, script and icon,
//! embedded in the binary (no CDN, no build step).
//!
//! The page holds no data: its script reads the JSON API under `/internal/`, and asks for
//! the admin token when that answers 401. So the page and its assets need no token, and
//! they are served outside `/internal/`. Every answer carries a strict
//! Content-Security-Policy (scripts and styles only from this origin, nothing inline),
//! `nosniff` and `no-referrer`; assets are revalidated with an `ETag` (`no-cache`).

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, HttpResponseBuilder, ResponseError};

use super::ApiError;

/// The policy every dashboard answer carries.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    hash: u64,
}

impl Asset {
    const fn new(name: &'static str, content_type: &'static str, body: &'static [u8]) -> Self {
        Self {
            name,
            content_type,
            body,
            hash: fnv1a(body),
        }
    }

    /// A strong validator: the content's hash and length.
    fn etag(&self) -> String {
        format!("\"{:016x}-{:x}\"", self.hash, self.body.len())
    }
}

const INDEX: Asset = Asset::new(
    "index.html",
    "text/html; charset=utf-8",
    include_bytes!("../../assets/index.html"),
);

/// The files under `/assets/`.
const ASSETS: [Asset; 3] = [
    Asset::new(
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/app.js"),
    ),
    Asset::new(
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/app.css"),
    ),
    Asset::new(
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("../../assets/favicon.svg"),
    ),
];

/// 64-bit FNV-1a, evaluated at compile time for the embedded files.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

/// `GET /`: the dashboard page.
pub async fn index(req: HttpRequest) -> HttpResponse {
    serve(&req, &INDEX)
}

/// `GET /assets/{name}`: the page's script, stylesheet and icon.
pub async fn asset(req: HttpRequest, name: web::Path<String>) -> HttpResponse {
    match ASSETS.iter().find(|a| a.name == name.as_str()) {
        Some(asset) => serve(&req, asset),
        None => {
            let mut response =
                ApiError::not_found(format!("no asset {:?}", name.as_str())).error_response();
            security_headers(response.headers_mut());
            response
        }
    }
}

fn serve(req: &HttpRequest, asset: &Asset) -> HttpResponse {
    let etag = asset.etag();
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .map(str::trim)
                .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag.as_str())
        });
    let mut response = if fresh {
        HttpResponseBuilder::new(StatusCode::NOT_MODIFIED).finish()
    } else {
        HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, asset.content_type))
            .body(asset.body)
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    security_headers(headers);
    response
}

fn security_headers(headers: &mut header::HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use actix_web::http::{header, Method, StatusCode};
    use actix_web::test as actix_test;
    use actix_web::web;

    use super::{ASSETS, CONTENT_SECURITY_POLICY, INDEX};
    use crate::app::Services;
    use crate::config::{Config, Vars};
    use crate::http::{build_app, AppState};

    const TOKEN: &str = "dashboard-test-token-0123456789";

    /// The real application; its database is never reached by these routes (the pool
    /// connects lazily), so no PostgreSQL is needed.
    fn state(admin_token: Option<&str>) -> web::Data<AppState> {
        let mut pairs = vec![
            ("DATABASE_URL", "postgres://postgres@127.0.0.1:1/unused"),
            ("DATABASE_POOL_SIZE", "1"),
        ];
        if let Some(token) = admin_token {
            pairs.push(("ADMIN_TOKEN", token));
        }
        let config = Config::from_vars(Vars::from_pairs(pairs)).expect("config");
        let services = Services::prepare(config).expect("services");
        web::Data::new(AppState {
            pool: services.pool.clone(),
            registry: Arc::clone(&services.registry),
            runner: services.runner("dashboard-test:0".into()),
            access: crate::http::Access::from_config(&services.config),
            live: services.live_view().expect("live view").0,
        })
    }

    async fn get(
        state: &web::Data<AppState>,
        path: &str,
        extra: Option<(header::HeaderName, &str)>,
    ) -> (StatusCode, header::HeaderMap, Vec<u8>) {
        let app = actix_test::init_service(build_app(state.clone())).await;
        let mut req = actix_test::TestRequest::get().uri(path);
        if let Some(h) = extra {
            req = req.insert_header(h);
        }
        let resp = actix_test::call_service(&app, req.to_request()).await;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = actix_test::read_body(resp).await.to_vec();
        (status, headers, body)
    }

    fn header<'a>(headers: &'a header::HeaderMap, name: &str) -> &'a str {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    #[actix_web::test]
    async fn the_page_is_html_with_a_strict_policy() {
        let state = state(None);
        let (status, headers, body) = get(&state, "/", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(header(&headers, "content-type"), "text/html; charset=utf-8");
        assert_eq!(
            header(&headers, "content-security-policy"),
            CONTENT_SECURITY_POLICY
        );
        assert!(CONTENT_SECURITY_POLICY.contains("script-src 'self';"));
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
        assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
        assert_eq!(header(&headers, "referrer-policy"), "no-referrer");
        assert_eq!(header(&headers, "cache-control"), "no-cache");
        assert!(header(&headers, "etag").starts_with('"'));
        let html = String::from_utf8(body).unwrap();
        assert!(html.contains("<script src=\"/assets/app.js\" defer></script>"));
        assert!(html.contains("href=\"/assets/app.css\""));
        // Nothing inline that the policy would block.
        assert_eq!(
            html.matches("<script").count(),
            html.matches("<script src=").count()
        );
        assert!(!html.contains("<style"));
        assert!(!html.contains(" style="));
        let handler = html.match_indices(" on").any(|(i, _)| {
            let rest = &html[i + 3..];
            let name_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            name_len > 0 && rest[name_len..].starts_with('=')
        });
        assert!(!handler, "inline event handler in the page");
        assert!(!html.contains("http://") && !html.contains("https://"));
    }

    #[actix_web::test]
    async fn assets_have_their_content_types_and_revalidate() {
        let state = state(None);
        for (path, content_type) in [
            ("/assets/app.js", "text/javascript; charset=utf-8"),
            ("/assets/app.css", "text/css; charset=utf-8"),
            ("/assets/favicon.svg", "image/svg+xml"),
        ] {
            let (status, headers, body) = get(&state, path, None).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert_eq!(header(&headers, "content-type"), content_type, "{path}");
            assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
            assert_eq!(header(&headers, "cache-control"), "no-cache");
            assert!(!body.is_empty());
            let etag = header(&headers, "etag").to_owned();
            let (status, headers, body) =
                get(&state, path, Some((header::IF_NONE_MATCH, &etag))).await;
            assert_eq!(status, StatusCode::NOT_MODIFIED, "{path}");
            assert_eq!(header(&headers, "etag"), etag);
            assert!(body.is_empty());
            let (status, _, _) =
                get(&state, path, Some((header::IF_NONE_MATCH, "\"other\""))).await;
            assert_eq!(status, StatusCode::OK, "{path}");
        }
        let (status, headers, body) = get(&state, "/assets/secret.env", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "not_found");
        let etags: std::collections::HashSet<String> =
            ASSETS.iter().chain([&INDEX]).map(|a| a.etag()).collect();
        assert_eq!(etags.len(), ASSETS.len() + 1);
    }

    #[actix_web::test]
    async fn the_page_and_assets_need_no_token_but_the_api_does() {
        let state = state(Some(TOKEN));
        for path in [
            "/",
            "/assets/app.js",
            "/assets/app.css",
            "/assets/favicon.svg",
        ] {
            let (status, _, _) = get(&state, path, None).await;
            assert_eq!(status, StatusCode::OK, "{path}");
        }
        let (status, headers, _) = get(&state, "/internal/api/v1/jobs", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(header(&headers, "www-authenticate").starts_with("Bearer"));
    }

    #[actix_web::test]
    async fn other_methods_get_405_with_allow() {
        let state = state(None);
        let app = actix_test::init_service(build_app(state.clone())).await;
        for path in ["/", "/assets/app.js"] {
            let req = actix_test::TestRequest::default()
                .method(Method::POST)
                .uri(path)
                .to_request();
            let resp = actix_test::call_service(&app, req).await;
            assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED, "{path}");
            assert_eq!(header(resp.headers(), "allow"), "GET, HEAD");
        }
    }

    /// The script never turns API data into markup: no HTML parsing sinks at all.
    #[test]
    fn the_script_uses_no_html_sinks() {
        let js = std::str::from_utf8(ASSETS[0].body).unwrap();
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            "createContextualFragment",
            ".style.",
            "setAttribute('style'",
        ] {
            assert!(!js.contains(sink), "app.js uses {sink}");
        }
    }
}
