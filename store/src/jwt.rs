//! The portal's session tokens: JWT, HS256, signed with the store's JWT key (`jwt.key`, mode
//! 0600), valid `session_ttl` (30 minutes). Claims: `sub` (user name), `role`, `client_id`
//! (the client a `user` reads), `domain`, `iat`, `exp`, and `sid`, the session the token
//! belongs to: a token is honoured only while its session row exists, so logging out,
//! disabling a user or resetting a password ends it at once, whatever its `exp` says.
//!
//! Only HS256 is accepted (a token claiming `none` or another algorithm is refused), with no
//! leeway on `exp`.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use mb_shared::status::Role;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Claims {
    pub(crate) sub: String,
    pub(crate) role: Role,
    #[serde(default)]
    pub(crate) client_id: Option<String>,
    #[serde(default)]
    pub(crate) domain: Option<String>,
    pub(crate) iat: u64,
    pub(crate) exp: u64,
    /// The session id, hex.
    pub(crate) sid: String,
}

pub(crate) struct Jwt {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    pub(crate) ttl: Duration,
}

impl Jwt {
    /// Loads the key (base64, at least 32 bytes, mode 0600).
    pub(crate) fn load(path: &Path, ttl: Duration) -> anyhow::Result<Self> {
        let key = mb_shared::crypto::read_secret_key(path)?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "iat", "sub"]);
        Ok(Self {
            encoding: EncodingKey::from_secret(&key)?,
            decoding: DecodingKey::from_secret(&key)?,
            validation,
            ttl,
        })
    }

    pub(crate) fn sign(&self, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
    }

    /// The claims of a token this store signed that has not expired.
    pub(crate) fn verify(&self, token: &str) -> Option<Claims> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .ok()
            .map(|t| t.claims)
    }
}

pub(crate) fn now_secs() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn jwt(key: &[u8]) -> Jwt {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("jwt.key");
        mb_shared::secret::write_private_file(
            &p,
            base64::engine::general_purpose::STANDARD
                .encode(key)
                .as_bytes(),
        )
        .unwrap();
        Jwt::load(&p, Duration::from_secs(1800)).unwrap()
    }

    fn claims(exp_in: i64) -> Claims {
        let now = now_secs();
        Claims {
            sub: "alice".into(),
            role: Role::User,
            client_id: Some("demo".into()),
            domain: Some("example.com".into()),
            iat: now,
            exp: now.saturating_add_signed(exp_in),
            sid: "00".repeat(16),
        }
    }

    #[test]
    fn a_signed_token_verifies_and_nothing_else_does() {
        let j = jwt(&[7; 32]);
        let token = j.sign(&claims(600)).unwrap();
        assert_eq!(j.verify(&token).unwrap().sub, "alice");
        // Expired, by a second: no leeway.
        assert!(j.verify(&j.sign(&claims(-1)).unwrap()).is_none());
        // Signed with another key.
        assert!(jwt(&[8; 32]).verify(&token).is_none());
        // Tampered payload (role raised), signature kept.
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let payload = String::from_utf8(b64.decode(&parts[1]).unwrap()).unwrap();
        parts[1] = b64.encode(payload.replace("\"user\"", "\"superadmin\""));
        assert!(j.verify(&parts.join(".")).is_none());
        // alg: none, no signature.
        let none = format!(
            "{}.{}.",
            b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
            b64.encode(serde_json::to_string(&claims(600)).unwrap())
        );
        assert!(j.verify(&none).is_none());
    }
}
