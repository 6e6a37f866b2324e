//! A [`QuotaStore`] on SQLite.

use async_trait::async_trait;
use cameleer_runtime::{ArtifactCharge, Error, Quota, QuotaStore, Result, Sha256Digest, TenantId};
use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::sqlite_db::{Db, db_err};

/// Tenants' quotas and artifact charges in one SQLite database file (it may
/// be the file of the [`SqliteDeploymentStore`](super::SqliteDeploymentStore):
/// the tables do not overlap).
///
/// A quota is a row holding its JSON; a charge is a row (tenant, SHA-256,
/// size). [`charge_artifact`](QuotaStore::charge_artifact) reads the
/// tenant's total and inserts in one `IMMEDIATE` transaction, so two
/// uploads, even from two processes, cannot both take the last bytes.
#[derive(Clone)]
pub struct SqliteQuotaStore {
    db: Db,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS quotas (
    tenant TEXT PRIMARY KEY,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS artifact_charges (
    tenant TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (tenant, sha256)
);
CREATE INDEX IF NOT EXISTS artifact_charges_sha256 ON artifact_charges (sha256);
";

super::sqlite_db::store_constructors!(SqliteQuotaStore, SCHEMA);

fn total_of(conn: &rusqlite::Connection, tenant: &str) -> Result<u64> {
    let total: i64 = conn
        .query_row(
            "SELECT COALESCE(SUM(size), 0) FROM artifact_charges WHERE tenant = ?1",
            [tenant],
            |row| row.get(0),
        )
        .map_err(db_err)?;
    Ok(total as u64)
}

#[async_trait]
impl QuotaStore for SqliteQuotaStore {
    async fn quota(&self, tenant: &TenantId) -> Result<Quota> {
        let tenant = tenant.clone();
        self.db
            .with(move |conn| {
                let body: Option<String> = conn
                    .query_row(
                        "SELECT body FROM quotas WHERE tenant = ?1",
                        [tenant.as_str()],
                        |row| row.get(0),
                    )
                    .optional()
                    .map_err(db_err)?;
                match body {
                    None => Ok(Quota::unlimited()),
                    Some(body) => serde_json::from_str(&body)
                        .map_err(|e| Error::storage(format!("corrupt quota of {tenant}"), e)),
                }
            })
            .await
    }

    async fn set_quota(&self, tenant: &TenantId, quota: Quota) -> Result<()> {
        let tenant = tenant.clone();
        let body = serde_json::to_string(&quota).map_err(|e| Error::storage("encode", e))?;
        self.db
            .with(move |conn| {
                conn.execute(
                    "INSERT INTO quotas (tenant, body) VALUES (?1, ?2)
                     ON CONFLICT (tenant) DO UPDATE SET body = excluded.body",
                    params![tenant.as_str(), body],
                )
                .map_err(db_err)?;
                Ok(())
            })
            .await
    }

    async fn charge_artifact(
        &self,
        tenant: &TenantId,
        sha256: &Sha256Digest,
        size: u64,
        limit: Option<u64>,
    ) -> Result<ArtifactCharge> {
        let (tenant, sha256) = (tenant.clone(), sha256.to_string());
        self.db
            .with(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(db_err)?;
                let total = total_of(&tx, tenant.as_str())?;
                let held: Option<i64> = tx
                    .query_row(
                        "SELECT size FROM artifact_charges WHERE tenant = ?1 AND sha256 = ?2",
                        params![tenant.as_str(), sha256],
                        |row| row.get(0),
                    )
                    .optional()
                    .map_err(db_err)?;
                if held.is_some() {
                    return Ok(ArtifactCharge::AlreadyCharged { total });
                }
                if limit.is_some_and(|l| total.saturating_add(size) > l) {
                    return Ok(ArtifactCharge::OverLimit { total });
                }
                tx.execute(
                    "INSERT INTO artifact_charges (tenant, sha256, size) VALUES (?1, ?2, ?3)",
                    params![tenant.as_str(), sha256, size as i64],
                )
                .map_err(db_err)?;
                tx.commit().map_err(db_err)?;
                Ok(ArtifactCharge::Charged {
                    total: total + size,
                })
            })
            .await
    }

    async fn release_artifact(&self, tenant: &TenantId, sha256: &Sha256Digest) -> Result<()> {
        let (tenant, sha256) = (tenant.clone(), sha256.to_string());
        self.db
            .with(move |conn| {
                conn.execute(
                    "DELETE FROM artifact_charges WHERE tenant = ?1 AND sha256 = ?2",
                    params![tenant.as_str(), sha256],
                )
                .map_err(db_err)?;
                Ok(())
            })
            .await
    }

    async fn forget_artifact(&self, sha256: &Sha256Digest) -> Result<()> {
        let sha256 = sha256.to_string();
        self.db
            .with(move |conn| {
                conn.execute("DELETE FROM artifact_charges WHERE sha256 = ?1", [sha256])
                    .map_err(db_err)?;
                Ok(())
            })
            .await
    }

    async fn artifact_bytes(&self, tenant: &TenantId) -> Result<u64> {
        let tenant = tenant.clone();
        self.db
            .with(move |conn| total_of(conn, tenant.as_str()))
            .await
    }

    async fn artifact_charged(&self, tenant: &TenantId, sha256: &Sha256Digest) -> Result<bool> {
        let (tenant, sha256) = (tenant.clone(), sha256.to_string());
        self.db
            .with(move |conn| {
                conn.query_row(
                    "SELECT 1 FROM artifact_charges WHERE tenant = ?1 AND sha256 = ?2",
                    [tenant.as_str(), sha256.as_str()],
                    |_| Ok(()),
                )
                .optional()
                .map(|row| row.is_some())
                .map_err(db_err)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keeps_the_contract_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        cameleer_runtime::testkit::check_quota_store(&SqliteQuotaStore::open(&path).unwrap()).await;
        let acme: TenantId = "acme".parse().unwrap();
        let quota = Quota {
            memory_mb: Some(2048),
            ..Quota::default()
        };
        {
            let store = SqliteQuotaStore::open(&path).unwrap();
            store.set_quota(&acme, quota).await.unwrap();
            store
                .charge_artifact(&acme, &Sha256Digest::of(b"jar"), 60, None)
                .await
                .unwrap();
        }
        let store = SqliteQuotaStore::open(&path).unwrap();
        assert_eq!(store.quota(&acme).await.unwrap(), quota);
        assert_eq!(store.artifact_bytes(&acme).await.unwrap(), 60);
    }

    #[tokio::test]
    async fn concurrent_charges_for_the_last_bytes_do_not_both_pass() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let acme: TenantId = "acme".parse().unwrap();
        // Two stores over one file: two connections, as two processes.
        let stores = [
            SqliteQuotaStore::open(&path).unwrap(),
            SqliteQuotaStore::open(&path).unwrap(),
        ];
        let tasks: Vec<_> = (0..20u8)
            .map(|i| {
                let store = stores[usize::from(i % 2)].clone();
                let acme = acme.clone();
                tokio::spawn(async move {
                    store
                        .charge_artifact(&acme, &Sha256Digest::of(&[i]), 10, Some(55))
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut charged = 0;
        for t in tasks {
            if matches!(t.await.unwrap(), ArtifactCharge::Charged { .. }) {
                charged += 1;
            }
        }
        assert_eq!(charged, 5);
        assert_eq!(stores[0].artifact_bytes(&acme).await.unwrap(), 50);
    }
}
