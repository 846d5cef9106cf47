//! Who may do what (README "Security"; contract §7.1).
//!
//! - Every route under `/internal` sits in one scope that [`require_role`] wraps
//!   (`http::internal`), so the check applies to the route the router matched: no
//!   spelling of a path (`%69nternal`, `//`, a trailing `/`) can reach an internal
//!   handler around it, because the spelling that routes is the spelling that is checked.
//! - Roles: `ADMIN_TOKEN` may do everything; `VIEWER_TOKEN` may use the safe methods
//!   (`GET`, `HEAD`) and gets 403 `forbidden` on anything else. Without `ADMIN_TOKEN` the
//!   server only listens on loopback and every caller is `local` (admin), so
//!   [`loopback_only`] refuses what a web page in the operator's browser could send: a
//!   foreign `Host` (DNS rebinding) and a cross-origin write (CSRF).
//! - `/metrics` is open unless `METRICS_TOKEN` is set; then [`require_metrics_reader`]
//!   wants that token, or the admin or viewer token.
//!
//! Tokens are compared in constant time, each of them every time, so timing reveals neither
//! how much of a guess was right nor which token it was close to.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpRequest, ResponseError};

use super::{ApiError, AppState};
use secrecy::{ExposeSecret, SecretString};

use crate::config::Config;

/// The tokens the server accepts; all unset means loopback mode.
#[derive(Debug, Clone, Default)]
pub struct Access {
    admin: Option<SecretString>,
    viewer: Option<SecretString>,
    metrics: Option<SecretString>,
}

impl Access {
    /// The tokens of a configuration (`ADMIN_TOKEN`, `VIEWER_TOKEN`, `METRICS_TOKEN`).
    pub fn from_config(config: &Config) -> Self {
        Self {
            admin: config.admin_token.clone(),
            viewer: config.viewer_token.clone(),
            metrics: config.metrics_token.clone(),
        }
    }

    /// No token: loopback mode, every caller is `local`.
    fn is_loopback_mode(&self) -> bool {
        self.admin.is_none()
    }

    /// The role a bearer token grants, if any. Compares against every configured token.
    fn role_of(&self, token: &str) -> Option<Role> {
        let is_admin = matches(token, &self.admin);
        let is_viewer = matches(token, &self.viewer);
        if is_admin {
            Some(Role::Admin)
        } else if is_viewer {
            Some(Role::Viewer)
        } else {
            None
        }
    }
}

fn matches(given: &str, expected: &Option<SecretString>) -> bool {
    expected
        .as_ref()
        .is_some_and(|e| constant_time_eq(given.as_bytes(), e.expose_secret().as_bytes()))
}

/// Who is asking, as the middleware decided; stored in the request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// `ADMIN_TOKEN`.
    Admin,
    /// `VIEWER_TOKEN`: safe methods only.
    Viewer,
    /// No token configured; the server is loopback-only.
    Local,
}

impl Role {
    /// Whether the role may use methods that change something (the viewer reads only).
    fn may_write(self) -> bool {
        self != Role::Viewer
    }

    fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Viewer => "viewer",
            Role::Local => "local",
        }
    }
}

/// Who made this request: `"admin"`, `"viewer"` or `"local"` (no token configured), as
/// decided by [`require_role`]; handlers record it with what they change. Every route
/// under `/internal` is behind that middleware, which always decides.
pub fn actor(req: &HttpRequest) -> &'static str {
    role(req).as_str()
}

/// Whether this request's token may change things, by the rule [`require_role`] applies.
pub fn may_write(req: &HttpRequest) -> bool {
    role(req).may_write()
}

fn role(req: &HttpRequest) -> Role {
    req.extensions()
        .get::<Role>()
        .copied()
        .unwrap_or(Role::Local)
}

/// Methods a viewer may use: those that change nothing.
fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD)
}

fn access(req: &ServiceRequest) -> Option<&Access> {
    req.app_data::<web::Data<AppState>>().map(|s| &s.access)
}

/// The value of a header sent exactly once; `None` when absent or repeated (two
/// `Authorization` or `Origin` headers are not a browser's, and which one counts would be
/// a guess).
fn single<'a>(
    headers: &'a HeaderMap,
    name: &header::HeaderName,
) -> Option<&'a header::HeaderValue> {
    let mut values = headers.get_all(name);
    let value = values.next()?;
    values.next().is_none().then_some(value)
}

/// The token of `Authorization: Bearer <token>`, sent once.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = single(headers, &header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn refuse<B>(req: ServiceRequest, error: ApiError) -> ServiceResponse<EitherBody<B>> {
    req.into_response(error.error_response())
        .map_into_right_body()
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

/// The check of the `/internal` scope: a valid token for the role the method needs, or
/// loopback mode. Records the caller's role for [`actor`].
pub async fn require_role(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody + 'static>>, actix_web::Error> {
    let Some(access) = access(&req) else {
        // Fail closed: without the state there is no way to tell who may pass.
        let error = ApiError::internal("access check", "the application state is missing");
        return Ok(refuse(req, error));
    };
    let role = if access.is_loopback_mode() {
        Role::Local
    } else {
        let Some(token) = bearer(req.headers()) else {
            let error = unauthorized("an Authorization: Bearer <token> header is required");
            return Ok(refuse(req, error));
        };
        match access.role_of(token) {
            None => return Ok(refuse(req, unauthorized("the bearer token is not valid"))),
            Some(role) if !role.may_write() && !is_safe(req.method()) => {
                let error = ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "the viewer token may only read; this needs the admin token",
                );
                return Ok(refuse(req, error));
            }
            Some(role) => role,
        }
    };
    req.extensions_mut().insert(role);
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

/// `/metrics`: open unless `METRICS_TOKEN` is set; then that token, the admin token or the
/// viewer token.
pub async fn require_metrics_reader(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody + 'static>>, actix_web::Error> {
    if let Some(access) = access(&req) {
        if access.metrics.is_some() {
            let allowed = bearer(req.headers()).is_some_and(|token| {
                // Every comparison runs, whichever matches.
                let as_metrics = matches(token, &access.metrics);
                let as_other = access.role_of(token).is_some();
                as_metrics | as_other
            });
            if !allowed {
                let error = unauthorized(
                    "/metrics needs Authorization: Bearer <METRICS_TOKEN> (or the admin or viewer token)",
                );
                return Ok(refuse(req, error));
            }
        }
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

/// Loopback mode only (no `ADMIN_TOKEN`): refuses a `Host` that is not a loopback name
/// (403 `forbidden_host`), and a write whose `Origin` is not this server's or that says
/// `Sec-Fetch-Site: cross-site` (403 `cross_origin`). Browsers always send `Host`, and
/// `Origin` on every cross-origin write, which is what a hostile page can make them do;
/// a request without them (curl, scripts) comes from someone who can reach loopback
/// anyway.
pub async fn loopback_only(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody + 'static>>, actix_web::Error> {
    if access(&req).is_some_and(Access::is_loopback_mode) {
        let host = req
            .headers()
            .get(header::HOST)
            .map(|h| h.to_str().unwrap_or(""));
        // An absolute-form target (`GET http://host/…`) names the host too.
        let authority = req.uri().authority().map(|a| a.as_str());
        if host.is_some_and(|h| !is_loopback_host(h))
            || authority.is_some_and(|a| !is_loopback_host(a))
        {
            let error = ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden_host",
                "without ADMIN_TOKEN the server answers only to localhost, 127.0.0.1 or [::1]",
            );
            return Ok(refuse(req, error));
        }
        if !is_safe(req.method()) && is_cross_origin(req.headers(), authority.or(host)) {
            let error = ApiError::new(
                StatusCode::FORBIDDEN,
                "cross_origin",
                "a write must come from this server's own pages (Origin and Sec-Fetch-Site)",
            );
            return Ok(refuse(req, error));
        }
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

/// `localhost`, `127.0.0.1` or `[::1]`, with any port or none.
fn is_loopback_host(host: &str) -> bool {
    let Some((name, port)) = split_host(host) else {
        return false;
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    port_ok && (name.eq_ignore_ascii_case("localhost") || name == "127.0.0.1" || name == "[::1]")
}

/// `name[:port]`, where an IPv6 name keeps its brackets.
fn split_host(host: &str) -> Option<(&str, Option<&str>)> {
    if host.starts_with('[') {
        let end = host.find(']')?;
        let (name, rest) = host.split_at(end + 1);
        match rest {
            "" => Some((name, None)),
            _ => rest.strip_prefix(':').map(|port| (name, Some(port))),
        }
    } else {
        match host.split_once(':') {
            Some((name, port)) => Some((name, Some(port))),
            None => Some((host, None)),
        }
    }
}

/// True when the browser says the request comes from another site, or its `Origin` is not
/// `http(s)://<host>` of this request. `Origin: null` (sandboxed frames, files) is foreign.
/// Either header sent more than once counts as foreign.
fn is_cross_origin(headers: &HeaderMap, host: Option<&str>) -> bool {
    let sec_fetch_site = header::HeaderName::from_static("sec-fetch-site");
    if headers.get_all(&sec_fetch_site).count() > 1 || headers.get_all(header::ORIGIN).count() > 1 {
        return true;
    }
    let cross_site = headers
        .get(&sec_fetch_site)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"));
    if cross_site {
        return true;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let (Ok(origin), Some(host)) = (origin.to_str(), host) else {
        return true;
    };
    !same_origin(origin, host)
}

fn same_origin(origin: &str, host: &str) -> bool {
    let Ok(origin) = url::Url::parse(origin) else {
        return false;
    };
    let default_port = match origin.scheme() {
        "http" => 80,
        "https" => 443,
        _ => return false,
    };
    let Some((name, port)) = split_host(host) else {
        return false;
    };
    let port = match port {
        None => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(p) => p,
            Err(_) => return false,
        },
    };
    // An origin is scheme, host and port only: a browser never sends more.
    origin.path() == "/"
        && origin.username().is_empty()
        && origin.password().is_none()
        && origin.query().is_none()
        && origin.fragment().is_none()
        && origin
            .host_str()
            .is_some_and(|h| h.eq_ignore_ascii_case(name))
        && origin.port_or_known_default() == Some(port)
}

/// Compares without stopping at the first difference, so timing does not reveal how much
/// of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_only_when_identical() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
    }

    #[test]
    fn only_loopback_names_are_loopback_hosts() {
        for host in [
            "localhost",
            "LocalHost:8080",
            "127.0.0.1",
            "127.0.0.1:1",
            "[::1]",
            "[::1]:8080",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "",
            "evil.example",
            "localhost.evil.example",
            "evil.localhost",
            "127.0.0.1.nip.io:8080",
            "127.0.0.2",
            "0.0.0.0:8080",
            "[::1]evil",
            "[::2]:80",
            "localhost:",
            "localhost:80x",
            "localhost:80:80",
            "2130706433",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn origins_match_scheme_host_and_port() {
        assert!(same_origin("http://127.0.0.1:8080", "127.0.0.1:8080"));
        assert!(same_origin("http://LOCALHOST:8080", "localhost:8080"));
        assert!(same_origin("http://localhost", "localhost"));
        assert!(same_origin("http://localhost", "localhost:80"));
        assert!(same_origin("http://[::1]:8080", "[::1]:8080"));
        assert!(!same_origin("http://127.0.0.1:9090", "127.0.0.1:8080"));
        assert!(!same_origin("http://localhost:8080", "127.0.0.1:8080"));
        assert!(!same_origin("https://localhost", "localhost:80"));
        assert!(!same_origin("null", "localhost"));
        assert!(!same_origin("file://", "localhost"));
        for decorated in [
            "http://evil.com@127.0.0.1:8080",
            "http://127.0.0.1:8080?x",
            "http://127.0.0.1:8080#x",
            "http://127.0.0.1:8080/path",
        ] {
            assert!(!same_origin(decorated, "127.0.0.1:8080"), "{decorated}");
        }
    }

    #[test]
    fn a_cross_site_fetch_is_cross_origin_even_without_an_origin() {
        let mut headers = HeaderMap::new();
        assert!(!is_cross_origin(&headers, Some("localhost:1")));
        headers.insert(
            header::HeaderName::from_static("sec-fetch-site"),
            header::HeaderValue::from_static("cross-site"),
        );
        assert!(is_cross_origin(&headers, Some("localhost:1")));
    }

    #[test]
    fn a_repeated_origin_sec_fetch_site_or_authorization_header_counts_for_nothing() {
        let sec_fetch_site = header::HeaderName::from_static("sec-fetch-site");
        let mut headers = HeaderMap::new();
        headers.append(
            sec_fetch_site.clone(),
            header::HeaderValue::from_static("same-origin"),
        );
        assert!(!is_cross_origin(&headers, Some("localhost:1")));
        headers.append(
            sec_fetch_site,
            header::HeaderValue::from_static("cross-site"),
        );
        assert!(is_cross_origin(&headers, Some("localhost:1")));

        let mut headers = HeaderMap::new();
        let own = header::HeaderValue::from_static("http://localhost:1");
        headers.append(header::ORIGIN, own.clone());
        assert!(!is_cross_origin(&headers, Some("localhost:1")));
        headers.append(header::ORIGIN, own);
        assert!(is_cross_origin(&headers, Some("localhost:1")));

        let mut headers = HeaderMap::new();
        let token = header::HeaderValue::from_static("Bearer secret");
        headers.append(header::AUTHORIZATION, token.clone());
        assert_eq!(bearer(&headers), Some("secret"));
        headers.append(header::AUTHORIZATION, token);
        assert_eq!(bearer(&headers), None);
    }

    #[test]
    fn the_viewer_token_grants_viewer_and_the_admin_token_admin() {
        let access = Access {
            admin: Some(SecretString::from("admin-token")),
            viewer: Some(SecretString::from("viewer-token")),
            metrics: None,
        };
        assert_eq!(access.role_of("admin-token"), Some(Role::Admin));
        assert_eq!(access.role_of("viewer-token"), Some(Role::Viewer));
        assert_eq!(access.role_of("viewer-toke"), None);
        assert_eq!(access.role_of(""), None);
    }
}
