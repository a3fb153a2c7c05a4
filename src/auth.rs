//! Bearer tokens: HS256 JWTs whose `sub` is the user id and `role` is customer or admin.
//! Verification checks the signature, `exp`, `nbf` when present (RFC 7519 §4.1.5), and
//! an optional maximum lifetime; `iat` is optional. A missing token is an anonymous caller.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::domain::values::UserId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Customer,
    Admin,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    role: Role,
    exp: i64,
    /// Issued at: optional (the README promises only `sub`, `role` and `exp`); used for
    /// the maximum lifetime when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<i64>,
    /// Not before: checked when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<i64>,
}

/// A verified caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: UserId,
    pub role: Role,
    /// Expiry of the token, unix seconds.
    pub expires_at: i64,
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// The one rule for orders, wherever one is shown (query, subscription, history,
    /// time travel): an admin sees every order, a customer only their own.
    pub fn may_see_order(&self, owner: &str) -> bool {
        self.is_admin() || owner == self.user_id.as_str()
    }
}

/// Who is calling, as far as the transport could tell.
#[derive(Debug, Clone)]
pub enum Auth {
    Anonymous,
    User(Caller),
    /// A token was sent but is not acceptable; the reason is safe to show.
    Invalid(String),
}

/// Signs a token for `sub` with `role`, valid for `ttl`.
pub fn mint_token(secret: &str, sub: &str, role: Role, ttl: Duration) -> anyhow::Result<String> {
    UserId::parse(sub).context("invalid subject")?;
    let now = chrono::Utc::now().timestamp();
    let claims = Claims {
        sub: sub.to_owned(),
        role,
        iat: Some(now),
        nbf: None,
        exp: now + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .context("signing the token")
}

/// Verifies bearer tokens with the configured secret.
#[derive(Clone)]
pub struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
    /// Longest lifetime accepted: `exp - iat`, or what is left of a token without `iat`.
    max_lifetime: Option<Duration>,
}

impl TokenVerifier {
    pub fn new(secret: &SecretString) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            key: DecodingKey::from_secret(secret.expose_secret().as_bytes()),
            validation,
            max_lifetime: None,
        }
    }

    /// Refuses tokens valid for longer than `max` (none: any lifetime).
    pub fn max_lifetime(mut self, max: Option<Duration>) -> Self {
        self.max_lifetime = max;
        self
    }

    /// Reads an `Authorization` header value (`Bearer <jwt>`); `None` is anonymous.
    pub fn authenticate(&self, header: Option<&str>) -> Auth {
        let Some(header) = header.map(str::trim).filter(|h| !h.is_empty()) else {
            return Auth::Anonymous;
        };
        let Some(token) = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
        else {
            return Auth::Invalid("the Authorization header must be 'Bearer <token>'".into());
        };
        match jsonwebtoken::decode::<Claims>(token.trim(), &self.key, &self.validation) {
            Ok(data) if self.too_long_lived(&data.claims) => Auth::Invalid(format!(
                "the token is valid for longer than the {} s this server accepts",
                self.max_lifetime.unwrap_or_default().as_secs()
            )),
            Ok(data) => match UserId::parse(&data.claims.sub) {
                Ok(user_id) => Auth::User(Caller {
                    user_id,
                    role: data.claims.role,
                    expires_at: data.claims.exp,
                }),
                Err(_) => Auth::Invalid("the token's subject is not a valid user id".into()),
            },
            Err(e) => match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    Auth::Invalid("the token has expired".into())
                }
                jsonwebtoken::errors::ErrorKind::ImmatureSignature => {
                    Auth::Invalid("the token is not valid yet (nbf)".into())
                }
                _ => Auth::Invalid("the token is not valid".into()),
            },
        }
    }
}

impl TokenVerifier {
    fn too_long_lived(&self, claims: &Claims) -> bool {
        let Some(max) = self.max_lifetime else {
            return false;
        };
        let from = claims.iat.unwrap_or_else(|| chrono::Utc::now().timestamp());
        let max = i64::try_from(max.as_secs()).unwrap_or(i64::MAX);
        claims.exp.saturating_sub(from) > max
    }
}

/// The configured secret, or the development secret kept in `<data_dir>/jwt-secret`
/// (created on first use with mode 0600). The second value says it is a development one.
pub fn resolve_secret(
    configured: Option<&SecretString>,
    data_dir: &Path,
) -> anyhow::Result<(SecretString, bool)> {
    if let Some(secret) = configured {
        anyhow::ensure!(
            secret.expose_secret().len() >= 16,
            "ORDERGRAPH_JWT_SECRET must be at least 16 characters"
        );
        return Ok((secret.clone(), false));
    }
    let path = data_dir.join("jwt-secret");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim().to_owned();
        if !existing.is_empty() {
            return Ok((SecretString::from(existing), true));
        }
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating data directory {}", data_dir.display()))?;
    let secret = hex::encode(rand::random::<[u8; 32]>());
    write_private(&path, &secret)
        .with_context(|| format!("writing development secret {}", path.display()))?;
    Ok((SecretString::from(secret), true))
}

#[cfg(unix)]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verifier() -> TokenVerifier {
        TokenVerifier::new(&SecretString::from("0123456789abcdef0123".to_owned()))
    }

    /// What `verifier()` makes of alice's admin token signed with `secret`.
    fn minted_by(secret: &str) -> Auth {
        let token = mint_token(secret, "alice", Role::Admin, Duration::from_secs(60)).unwrap();
        verifier().authenticate(Some(&format!("Bearer {token}")))
    }

    #[test]
    fn a_minted_token_verifies() {
        match minted_by("0123456789abcdef0123") {
            Auth::User(c) => assert!(c.is_admin() && c.user_id.as_str() == "alice"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_token_signed_with_another_secret_is_invalid() {
        assert!(matches!(
            minted_by("another-secret-entirely"),
            Auth::Invalid(_)
        ));
        assert!(matches!(
            verifier().authenticate(Some("Basic abc")),
            Auth::Invalid(_)
        ));
        assert!(matches!(verifier().authenticate(None), Auth::Anonymous));
    }

    #[test]
    fn the_development_secret_is_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let (a, dev) = resolve_secret(None, dir.path()).unwrap();
        let (b, _) = resolve_secret(None, dir.path()).unwrap();
        assert!(dev);
        assert_eq!(a.expose_secret(), b.expose_secret());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("jwt-secret"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
