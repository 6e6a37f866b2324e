//! Authentication and tenancy of the example server's API: bearer tokens.
//!
//! Two kinds of token open the API:
//!
//! - **the admin token**: one per server, read from `--admin-token-file`, or
//!   created at the first start in `<data-dir>/admin-token` (mode 0600,
//!   never logged). It opens every route of every tenant, and the
//!   admin-only ones (tokens, quotas, retention, the log forwarder).
//! - **tenant tokens**: made by the admin with `POST
//!   /api/v1/tenants/{tenant}/tokens`, shown once, stored only as a SHA-256
//!   of their secret (a token is 256 random bits: a slow password hash buys
//!   nothing), revoked with `DELETE`. A tenant token opens its own tenant's
//!   routes; any route of another tenant answers 404, as if it did not
//!   exist, and an admin-only route 403 `admin_only`.
//!
//! No token, or one the server does not know, gets 401 `unauthorized` with
//! the error envelope and a `WWW-Authenticate: Bearer` header. Secrets are
//! compared in constant time ([`subtle`]).
//!
//! A tenant token reads `cmr_<id>_<secret>`: 16 hex digits of id (what the
//! list and the revocation name) and 64 of secret.

mod admin_token;
mod middleware;
mod token;

use std::sync::Arc;

use async_trait::async_trait;
use cameleer_runtime::{Result, TenantId};
use serde::Serialize;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

pub use admin_token::{AdminToken, AdminTokenError, MIN_ADMIN_TOKEN_LEN};
pub use middleware::{Access, access_of, require_token};
pub use token::{NewToken, TokenId, TokenSecret};

/// Who a request is, once its token is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The admin token: every tenant, and the admin-only routes.
    Admin,
    /// A tenant token: that tenant's routes only.
    Tenant {
        /// The tenant the token belongs to.
        tenant: TenantId,
        /// The token's id.
        token: TokenId,
    },
}

/// A tenant token as stored and listed: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TokenInfo {
    /// The token's id (the `<id>` of `cmr_<id>_<secret>`).
    #[schema(value_type = String, pattern = "^[0-9a-f]{16}$")]
    pub id: TokenId,
    /// The tenant it opens.
    pub tenant: TenantId,
    /// What the admin called it (e.g. `ci`), if anything.
    pub name: Option<String>,
    /// When it was made.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// When it stops working; null: it works until revoked.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<OffsetDateTime>,
}

impl TokenInfo {
    /// Whether the token has expired at `now`.
    pub fn expired_at(&self, now: OffsetDateTime) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }
}

/// A stored tenant token: its [`TokenInfo`] and the SHA-256 of its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredToken {
    /// The listed part.
    pub info: TokenInfo,
    /// SHA-256 of the secret.
    pub secret_sha256: [u8; 32],
}

/// Where tenant tokens are kept (the example server: SQLite,
/// [`SqliteTokenStore`](crate::storage::SqliteTokenStore)). Only hashes
/// are stored.
#[async_trait]
pub trait TokenStore: Send + Sync + 'static {
    /// Stores a new token.
    async fn insert(&self, token: StoredToken) -> Result<()>;
    /// The token with `id`, revoked ones excluded.
    async fn get(&self, id: &TokenId) -> Result<Option<StoredToken>>;
    /// A tenant's tokens, oldest first.
    async fn list(&self, tenant: &TenantId) -> Result<Vec<TokenInfo>>;
    /// Revokes a tenant's token; `false` if the tenant has no such token.
    async fn revoke(&self, tenant: &TenantId, id: &TokenId) -> Result<bool>;
}

/// Checks tokens: the admin token and a [`TokenStore`] of tenant tokens.
/// Cheap to clone.
#[derive(Clone)]
pub struct Auth {
    admin_sha256: [u8; 32],
    store: Arc<dyn TokenStore>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not even the admin token's hash.
        f.debug_struct("Auth").finish_non_exhaustive()
    }
}

impl Auth {
    /// Checks the `admin` token and the tenant tokens of `store`.
    pub fn new(admin: &AdminToken, store: Arc<dyn TokenStore>) -> Self {
        Self {
            admin_sha256: token::sha256(admin.expose().as_bytes()),
            store,
        }
    }

    /// Who `bearer` (the token of an `Authorization: Bearer` header) is;
    /// `None` for a token the server does not know or that was revoked.
    pub async fn authenticate(&self, bearer: &str) -> Result<Option<Principal>> {
        let presented = token::sha256(bearer.as_bytes());
        // Every request pays the same comparison, whichever kind it holds.
        let is_admin: bool = presented.ct_eq(&self.admin_sha256).into();
        if is_admin {
            return Ok(Some(Principal::Admin));
        }
        let Some((id, secret)) = token::parse(bearer) else {
            return Ok(None);
        };
        let Some(stored) = self.store.get(&id).await? else {
            return Ok(None);
        };
        if stored.info.expired_at(OffsetDateTime::now_utc()) {
            return Ok(None);
        }
        let matches: bool = token::sha256(secret.as_bytes())
            .ct_eq(&stored.secret_sha256)
            .into();
        Ok(matches.then_some(Principal::Tenant {
            tenant: stored.info.tenant,
            token: stored.info.id,
        }))
    }

    /// Makes a token for `tenant` that works until revoked: stored hashed,
    /// its secret returned once.
    pub async fn create_token(
        &self,
        tenant: TenantId,
        name: Option<String>,
    ) -> Result<(TokenInfo, TokenSecret)> {
        self.create_token_expiring(tenant, name, None).await
    }

    /// [`create_token`](Self::create_token), the token refused once
    /// `expires_in` has passed (when given).
    pub async fn create_token_expiring(
        &self,
        tenant: TenantId,
        name: Option<String>,
        expires_in: Option<std::time::Duration>,
    ) -> Result<(TokenInfo, TokenSecret)> {
        let new = NewToken::generate()?;
        let now = OffsetDateTime::now_utc();
        let info = TokenInfo {
            id: new.id.clone(),
            tenant,
            name,
            created_at: now,
            expires_at: expires_in.map(|d| now + d),
        };
        self.store
            .insert(StoredToken {
                info: info.clone(),
                secret_sha256: new.secret_sha256(),
            })
            .await?;
        Ok((info, new.into_secret()))
    }

    /// A tenant's tokens, without secrets.
    pub async fn tokens(&self, tenant: &TenantId) -> Result<Vec<TokenInfo>> {
        self.store.list(tenant).await
    }

    /// Revokes a tenant's token; `false` if there is none with `id`.
    pub async fn revoke(&self, tenant: &TenantId, id: &TokenId) -> Result<bool> {
        self.store.revoke(tenant, id).await
    }
}

#[cfg(test)]
mod tests;
