//! What a Supabase key may do, read from the key itself where it says so.
//!
//! Storage enforces row-level security with the role in the key, and a key without delete
//! rights gets `200 []` from a bulk delete — exactly the answer for names already gone. So
//! the client must know the key's rights before an empty answer can mean anything:
//!
//! - a legacy key is a JWT: its payload's `role` claim (`service_role`, `anon`,
//!   `authenticated`) is read without verifying the signature (Storage verifies it);
//! - `sb_secret_…` keys are server-side keys that bypass row-level security;
//!   `sb_publishable_…` keys have the anon role;
//! - anything else (an opaque key, a JWT without a `role`) cannot be read: its rights must
//!   be proven by deleting a probe object (see `Client::prove_delete_rights`).

use base64::Engine;

use crate::Error;

/// What a key says about its rights on `storage.objects`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyRights {
    /// A legacy JWT with `role` `service_role`: bypasses row-level security.
    ServiceRole,
    /// A `sb_secret_…` key: bypasses row-level security.
    Secret,
    /// The key's rights cannot be read from it: prove them before trusting `200 []`.
    Unknown,
}

impl KeyRights {
    /// Whether the key's delete rights must be proven before an empty answer is trusted.
    pub fn must_be_proven(&self) -> bool {
        matches!(self, KeyRights::Unknown)
    }
}

/// Reads the key's rights; a key that says it cannot delete is
/// [`Error::KeyCannotDelete`]. Never puts the key in an error.
pub fn key_rights(key: &str) -> Result<KeyRights, Error> {
    let key = key.trim();
    if key.starts_with("sb_publishable_") {
        return Err(Error::KeyCannotDelete {
            kind: "a publishable key (sb_publishable_…, anon rights)".to_owned(),
        });
    }
    if key.starts_with("sb_secret_") {
        return Ok(KeyRights::Secret);
    }
    match jwt_role(key) {
        Some(Role::Claimed(role)) if role == "service_role" => Ok(KeyRights::ServiceRole),
        Some(Role::Claimed(role)) => Err(Error::KeyCannotDelete {
            kind: format!("a JWT with role {:?}", shorten(&role, 40)),
        }),
        Some(Role::Missing) | None => Ok(KeyRights::Unknown),
    }
}

enum Role {
    Claimed(String),
    Missing,
}

/// The `role` claim of a JWT, when `key` is one (three base64url parts, a JSON payload).
fn jwt_role(key: &str) -> Option<Role> {
    let mut parts = key.split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let claims = claims.as_object()?;
    Some(
        match claims.get("role").and_then(serde_json::Value::as_str) {
            Some(role) => Role::Claimed(role.to_owned()),
            None => Role::Missing,
        },
    )
}

fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An unsigned JWT with these claims, shaped like Supabase's legacy keys.
    pub(crate) fn jwt(claims: &serde_json::Value) -> String {
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.c2lnbmF0dXJl",
            engine.encode(br#"{"alg":"HS256","typ":"JWT"}"#),
            engine.encode(claims.to_string())
        )
    }

    #[test]
    fn service_role_jwts_and_secret_keys_are_trusted() {
        let key = jwt(&serde_json::json!({"iss": "supabase", "role": "service_role"}));
        assert_eq!(key_rights(&key), Ok(KeyRights::ServiceRole));
        assert_eq!(key_rights("sb_secret_abc123"), Ok(KeyRights::Secret));
    }

    #[test]
    fn anon_jwts_and_publishable_keys_are_refused_without_showing_the_key() {
        for role in ["anon", "authenticated", ""] {
            let key = jwt(&serde_json::json!({"role": role}));
            let error = key_rights(&key).unwrap_err();
            assert!(matches!(error, Error::KeyCannotDelete { .. }), "{error}");
            assert!(!error.to_string().contains(&key));
        }
        let error = key_rights("sb_publishable_abcdef").unwrap_err();
        assert!(matches!(error, Error::KeyCannotDelete { .. }));
        assert!(!error.to_string().contains("abcdef"), "{error}");
    }

    #[test]
    fn keys_that_say_nothing_must_be_proven() {
        for key in [
            "opaque-service-key".to_owned(),
            "a.b.c".to_owned(),
            jwt(&serde_json::json!({"iss": "supabase"})),
            jwt(&serde_json::json!([1, 2])),
        ] {
            assert_eq!(key_rights(&key), Ok(KeyRights::Unknown), "{key}");
        }
    }
}
