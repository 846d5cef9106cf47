//! Bearer-token protection of `/internal/*`.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, ResponseError};

use super::{ApiError, AppState};

/// Lets a request through when `ADMIN_TOKEN` is unset, or when it carries
/// `Authorization: Bearer <token>`; anything else under `/internal/` gets 401.
pub async fn require_token(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody + 'static>>, actix_web::Error> {
    let expected = req
        .app_data::<web::Data<AppState>>()
        .and_then(|s| s.admin_token.clone());
    if let Some(expected) = expected {
        if req.path().starts_with("/internal/") {
            let given = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| {
                    let (scheme, token) = v.split_once(' ')?;
                    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
                });
            let message = match given {
                None => Some("an Authorization: Bearer <token> header is required"),
                Some(token)
                    if !constant_time_eq(token.as_bytes(), expected.expose().as_bytes()) =>
                {
                    Some("the bearer token is not valid")
                }
                Some(_) => None,
            };
            if let Some(message) = message {
                let response = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
                    .error_response();
                return Ok(req.into_response(response).map_into_right_body());
            }
        }
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

/// Who made the request, as recorded in an execution (`cancelled by <actor>`).
pub fn actor(_req: &actix_web::HttpRequest) -> &'static str {
    "local"
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
    use super::constant_time_eq;

    #[test]
    fn equal_only_when_identical() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
    }
}
