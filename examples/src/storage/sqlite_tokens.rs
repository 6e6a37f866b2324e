//! A [`TokenStore`] on SQLite.

use async_trait::async_trait;
use cameleer_runtime::{Error, Result, TenantId};
use rusqlite::{OptionalExtension, params};
use time::OffsetDateTime;

use super::sqlite_db::{Db, db_err};
use crate::auth::{StoredToken, TokenId, TokenInfo, TokenStore};

/// Tenant tokens in one SQLite database file (it may be the deployment
/// store's: the table does not overlap). A row holds the id, tenant, name,
/// creation time and the SHA-256 of the secret, never the secret;
/// revoking deletes the row.
#[derive(Clone)]
pub struct SqliteTokenStore {
    db: Db,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS api_tokens (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    name TEXT,
    created_at TEXT NOT NULL,
    secret_sha256 BLOB NOT NULL,
    expires_at TEXT
);
CREATE INDEX IF NOT EXISTS api_tokens_tenant ON api_tokens (tenant, created_at);
";

super::sqlite_db::store_constructors!(SqliteTokenStore, SCHEMA);

fn corrupt(what: &str) -> Error {
    Error::Storage {
        message: format!("api_tokens: {what}"),
        source: None,
    }
}

/// The listed columns, in the order every `SELECT` here names them.
const INFO: &str = "id, tenant, name, created_at, expires_at";

type InfoRow = (String, String, Option<String>, String, Option<String>);

fn info_of(row: &rusqlite::Row<'_>) -> rusqlite::Result<InfoRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
    ))
}

fn rfc3339(t: OffsetDateTime) -> Result<String> {
    t.format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| Error::storage("formatting a time", e))
}

fn parse_time(text: &str, what: &str) -> Result<OffsetDateTime> {
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|_| corrupt(&format!("a row's {what} is not RFC 3339")))
}

fn to_info((id, tenant, name, created, expires): InfoRow) -> Result<TokenInfo> {
    Ok(TokenInfo {
        id: id
            .parse()
            .map_err(|_| corrupt("a row's id is not a token id"))?,
        tenant: tenant
            .parse()
            .map_err(|_| corrupt("a row's tenant is not a tenant id"))?,
        name,
        created_at: parse_time(&created, "created_at")?,
        expires_at: expires.map(|e| parse_time(&e, "expires_at")).transpose()?,
    })
}

#[async_trait]
impl TokenStore for SqliteTokenStore {
    async fn insert(&self, token: StoredToken) -> Result<()> {
        self.db
            .with(move |conn| {
                let created = rfc3339(token.info.created_at)?;
                let expires = token.info.expires_at.map(rfc3339).transpose()?;
                conn.execute(
                    &format!(
                        "INSERT INTO api_tokens ({INFO}, secret_sha256) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
                    ),
                    params![
                        token.info.id.as_str(),
                        token.info.tenant.as_str(),
                        token.info.name,
                        created,
                        expires,
                        token.secret_sha256.as_slice(),
                    ],
                )
                .map_err(db_err)?;
                Ok(())
            })
            .await
    }

    async fn get(&self, id: &TokenId) -> Result<Option<StoredToken>> {
        let id = id.clone();
        self.db
            .with(move |conn| {
                let row = conn
                    .query_row(
                        &format!("SELECT {INFO}, secret_sha256 FROM api_tokens WHERE id = ?1"),
                        [id.as_str()],
                        |row| Ok((info_of(row)?, row.get::<_, Vec<u8>>(5)?)),
                    )
                    .optional()
                    .map_err(db_err)?;
                let Some((info, hash)) = row else {
                    return Ok(None);
                };
                let secret_sha256: [u8; 32] = hash
                    .try_into()
                    .map_err(|_| corrupt("a row's secret_sha256 is not 32 bytes"))?;
                Ok(Some(StoredToken {
                    info: to_info(info)?,
                    secret_sha256,
                }))
            })
            .await
    }

    async fn list(&self, tenant: &TenantId) -> Result<Vec<TokenInfo>> {
        let tenant = tenant.clone();
        self.db
            .with(move |conn| {
                let mut stmt = conn
                    .prepare(&format!(
                        "SELECT {INFO} FROM api_tokens WHERE tenant = ?1 ORDER BY created_at, id"
                    ))
                    .map_err(db_err)?;
                let rows = stmt
                    .query_map([tenant.as_str()], info_of)
                    .map_err(db_err)?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(db_err)?;
                rows.into_iter().map(to_info).collect()
            })
            .await
    }

    async fn revoke(&self, tenant: &TenantId, id: &TokenId) -> Result<bool> {
        let (tenant, id) = (tenant.clone(), id.clone());
        self.db
            .with(move |conn| {
                let n = conn
                    .execute(
                        "DELETE FROM api_tokens WHERE id = ?1 AND tenant = ?2",
                        [id.as_str(), tenant.as_str()],
                    )
                    .map_err(db_err)?;
                Ok(n > 0)
            })
            .await
    }
}
