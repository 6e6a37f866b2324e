//! A [`DeploymentStore`] on SQLite.

use async_trait::async_trait;
use cameleer_runtime::{
    AppRef, Deployment, DeploymentId, DeploymentStore, Error, NewDeployment, Result, TenantId,
};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::sqlite_db::{Db, db_err};
use time::OffsetDateTime;

/// Deployments in one SQLite database file.
///
/// Each deployment is a row holding its JSON, with the columns the queries
/// need beside it. Versions come from a separate counter table, bumped in the
/// same `IMMEDIATE` transaction as the insert, so they are atomic, monotonic
/// and never reused, even if rows are deleted by hand. `update` is a
/// compare-and-swap on `revision`.
///
/// The connection is used from blocking tasks; one connection serialises
/// writers, which SQLite does anyway.
#[derive(Clone)]
pub struct SqliteDeploymentStore {
    db: Db,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS versions (
    tenant TEXT NOT NULL,
    app TEXT NOT NULL,
    env TEXT NOT NULL,
    last INTEGER NOT NULL,
    PRIMARY KEY (tenant, app, env)
);
CREATE TABLE IF NOT EXISTS deployments (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    app TEXT NOT NULL,
    env TEXT NOT NULL,
    version INTEGER NOT NULL,
    status TEXT NOT NULL,
    revision INTEGER NOT NULL,
    body TEXT NOT NULL,
    UNIQUE (tenant, app, env, version)
);
CREATE INDEX IF NOT EXISTS deployments_status ON deployments (status);
";

super::sqlite_db::store_constructors!(SqliteDeploymentStore, SCHEMA);

impl SqliteDeploymentStore {
    async fn with<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        self.db.with(f).await
    }

    /// The newest deployment of every app and env, of `tenant` or of all
    /// tenants, ordered by tenant, app, env.
    async fn newest_of_apps(&self, tenant: Option<TenantId>) -> Result<Vec<Deployment>> {
        self.with(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT d.body FROM deployments d
                     WHERE (?1 IS NULL OR d.tenant = ?1) AND d.version = (
                         SELECT MAX(version) FROM deployments m
                         WHERE m.tenant = d.tenant AND m.app = d.app AND m.env = d.env)
                     ORDER BY d.tenant, d.app, d.env",
                )
                .map_err(db_err)?;
            decode_all(&mut stmt, [tenant.as_ref().map(TenantId::as_str)])
        })
        .await
    }
}

fn decode(body: String) -> Result<Deployment> {
    serde_json::from_str(&body).map_err(|e| Error::storage("corrupt deployment row", e))
}

fn decode_all(
    stmt: &mut rusqlite::Statement<'_>,
    params: impl rusqlite::Params,
) -> Result<Vec<Deployment>> {
    let rows = stmt
        .query_map(params, |row| row.get::<_, String>(0))
        .map_err(db_err)?;
    rows.map(|r| r.map_err(db_err).and_then(decode)).collect()
}

#[async_trait]
impl DeploymentStore for SqliteDeploymentStore {
    async fn create(&self, app: &AppRef, new: NewDeployment) -> Result<Deployment> {
        let app = app.clone();
        self.with(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_err)?;
            let version: i64 = tx
                .query_row(
                    "INSERT INTO versions (tenant, app, env, last) VALUES (?1, ?2, ?3, 1)
                     ON CONFLICT (tenant, app, env) DO UPDATE SET last = last + 1
                     RETURNING last",
                    params![app.tenant.as_str(), app.app.as_str(), app.env.as_str()],
                    |row| row.get(0),
                )
                .map_err(db_err)?;
            let deployment = Deployment::new(
                app.clone(),
                version as u64,
                new.artifact,
                new.image,
                new.source,
                new.config,
                OffsetDateTime::now_utc(),
            );
            let body =
                serde_json::to_string(&deployment).map_err(|e| Error::storage("encode", e))?;
            tx.execute(
                "INSERT INTO deployments (id, tenant, app, env, version, status, revision, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    deployment.id.to_string(),
                    app.tenant.as_str(),
                    app.app.as_str(),
                    app.env.as_str(),
                    version,
                    deployment.status.as_str(),
                    deployment.revision as i64,
                    body
                ],
            )
            .map_err(db_err)?;
            tx.commit().map_err(db_err)?;
            Ok(deployment)
        })
        .await
    }

    async fn get(&self, id: &DeploymentId) -> Result<Deployment> {
        let id = *id;
        self.with(move |conn| {
            let body: Option<String> = conn
                .query_row(
                    "SELECT body FROM deployments WHERE id = ?1",
                    [id.to_string()],
                    |row| row.get(0),
                )
                .optional()
                .map_err(db_err)?;
            body.map(decode)
                .unwrap_or_else(|| Err(Error::not_found("deployment", id)))
        })
        .await
    }

    async fn update(&self, deployment: &Deployment) -> Result<Deployment> {
        let mut next = deployment.clone();
        next.revision += 1;
        self.with(move |conn| {
            let body = serde_json::to_string(&next).map_err(|e| Error::storage("encode", e))?;
            let changed = conn
                .execute(
                    "UPDATE deployments SET status = ?1, revision = ?2, body = ?3
                     WHERE id = ?4 AND revision = ?5",
                    params![
                        next.status.as_str(),
                        next.revision as i64,
                        body,
                        next.id.to_string(),
                        (next.revision - 1) as i64
                    ],
                )
                .map_err(db_err)?;
            if changed == 1 {
                return Ok(next);
            }
            let current: Option<i64> = conn
                .query_row(
                    "SELECT revision FROM deployments WHERE id = ?1",
                    [next.id.to_string()],
                    |row| row.get(0),
                )
                .optional()
                .map_err(db_err)?;
            Err(match current {
                None => Error::not_found("deployment", next.id),
                Some(rev) => Error::Conflict(format!(
                    "deployment {} is at revision {rev}, not {}",
                    next.id,
                    next.revision - 1
                )),
            })
        })
        .await
    }

    async fn list(&self, app: &AppRef) -> Result<Vec<Deployment>> {
        let app = app.clone();
        self.with(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT body FROM deployments WHERE tenant = ?1 AND app = ?2 AND env = ?3
                     ORDER BY version DESC",
                )
                .map_err(db_err)?;
            decode_all(
                &mut stmt,
                params![app.tenant.as_str(), app.app.as_str(), app.env.as_str()],
            )
        })
        .await
    }

    async fn latest_per_app(&self, tenant: &TenantId) -> Result<Vec<Deployment>> {
        self.newest_of_apps(Some(tenant.clone())).await
    }

    async fn latest_of_every_app(&self) -> Result<Vec<Deployment>> {
        self.newest_of_apps(None).await
    }

    async fn active(&self) -> Result<Vec<Deployment>> {
        self.with(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT body FROM deployments
                     WHERE status IN ('BUILDING', 'STARTING', 'RUNNING')
                     ORDER BY tenant, app, env, version",
                )
                .map_err(db_err)?;
            decode_all(&mut stmt, [])
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cameleer_runtime::{
        AppConfig, DeploymentEvent, DeploymentSource, DeploymentStatus, Sha256Digest, StatusReason,
    };

    fn new() -> NewDeployment {
        NewDeployment {
            artifact: Sha256Digest::of(b"jar"),
            image: None,
            source: DeploymentSource::Build,
            config: AppConfig::default(),
        }
    }

    #[tokio::test]
    async fn versions_are_per_app_monotonic_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let a = AppRef::parse("acme", "orders", "dev").unwrap();
        let b = a.in_env("prod".parse().unwrap());
        {
            let store = SqliteDeploymentStore::open(&path).unwrap();
            assert_eq!(store.create(&a, new()).await.unwrap().version, 1);
            assert_eq!(store.create(&a, new()).await.unwrap().version, 2);
            assert_eq!(store.create(&b, new()).await.unwrap().version, 1);
        }
        let store = SqliteDeploymentStore::open(&path).unwrap();
        // Versions are never reused, even when rows go away.
        store
            .with(|c| c.execute("DELETE FROM deployments", []).map_err(db_err))
            .await
            .unwrap();
        assert_eq!(store.create(&a, new()).await.unwrap().version, 3);
    }

    #[tokio::test]
    async fn concurrent_creates_get_unique_versions() {
        let store = SqliteDeploymentStore::in_memory().unwrap();
        let a = AppRef::parse("acme", "orders", "dev").unwrap();
        let tasks: Vec<_> = (0..40)
            .map(|_| {
                let (s, a) = (store.clone(), a.clone());
                tokio::spawn(async move { s.create(&a, new()).await.unwrap().version })
            })
            .collect();
        let mut versions = Vec::new();
        for t in tasks {
            versions.push(t.await.unwrap());
        }
        versions.sort_unstable();
        assert_eq!(versions, (1..=40).collect::<Vec<_>>());
        let listed: Vec<u64> = store
            .list(&a)
            .await
            .unwrap()
            .iter()
            .map(|d| d.version)
            .collect();
        assert_eq!(listed, (1..=40).rev().collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn update_is_a_compare_and_swap() {
        let store = SqliteDeploymentStore::in_memory().unwrap();
        let a = AppRef::parse("acme", "orders", "dev").unwrap();
        let d = store.create(&a, new()).await.unwrap();
        let mut first = d.clone();
        first
            .apply(&DeploymentEvent::BuildSucceeded, OffsetDateTime::now_utc())
            .unwrap();
        let saved = store.update(&first).await.unwrap();
        assert_eq!(saved.revision, 1);
        // A second writer holding the old revision loses and writes nothing.
        let mut stale = d.clone();
        stale
            .apply(
                &DeploymentEvent::BuildFailed {
                    reason: StatusReason::other("x"),
                },
                OffsetDateTime::now_utc(),
            )
            .unwrap();
        assert_eq!(store.update(&stale).await.unwrap_err().code(), "conflict");
        let now = store.get(&d.id).await.unwrap();
        assert_eq!(now.status, DeploymentStatus::Starting);
        assert_eq!(now, saved);
        let unknown = Deployment {
            id: DeploymentId::new_random(),
            ..saved
        };
        assert_eq!(
            store.update(&unknown).await.unwrap_err().code(),
            "not_found"
        );
    }

    #[tokio::test]
    async fn latest_per_app_and_active() {
        let store = SqliteDeploymentStore::in_memory().unwrap();
        let dev = AppRef::parse("acme", "orders", "dev").unwrap();
        let prod = dev.in_env("prod".parse().unwrap());
        let other = AppRef::parse("globex", "orders", "dev").unwrap();
        store.create(&dev, new()).await.unwrap();
        let dev2 = store.create(&dev, new()).await.unwrap();
        let prod1 = store.create(&prod, new()).await.unwrap();
        store.create(&other, new()).await.unwrap();
        let latest = store.latest_per_app(&dev.tenant).await.unwrap();
        let ids: Vec<_> = latest.iter().map(|d| d.id).collect();
        assert_eq!(ids, vec![dev2.id, prod1.id]);
        let mut stopped = prod1.clone();
        stopped
            .apply(
                &DeploymentEvent::Stopped {
                    reason: StatusReason::StoppedOnRequest,
                },
                OffsetDateTime::now_utc(),
            )
            .unwrap();
        store.update(&stopped).await.unwrap();
        let active = store.active().await.unwrap();
        assert_eq!(active.len(), 3);
        assert!(active.iter().all(|d| d.id != prod1.id));
        // Across tenants, the newest of each, whatever its status.
        let newest = store.latest_of_every_app().await.unwrap();
        let apps: Vec<_> = newest
            .iter()
            .map(|d| (d.app.to_string(), d.version))
            .collect();
        assert_eq!(
            apps,
            [
                (dev.to_string(), 2),
                (prod.to_string(), 1),
                (other.to_string(), 1)
            ]
        );
        assert_eq!(newest[1].status, DeploymentStatus::Stopped);
    }

    /// Rows written before reasons were typed hold plain strings in the
    /// history; they still load, each as the variant it describes.
    #[tokio::test]
    async fn histories_stored_with_free_text_reasons_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deployments.db");
        let store = SqliteDeploymentStore::open(&path).unwrap();
        let a = AppRef::parse("acme", "orders", "dev").unwrap();
        let d = store.create(&a, new()).await.unwrap();
        // The row as the store wrote it before: every reason a sentence.
        let mut body = serde_json::to_value(&d).unwrap();
        let at = body["history"][0]["at"].clone();
        body["status"] = "FAILED".into();
        body["history"] = serde_json::json!([
            {"status": "BUILDING", "at": at},
            {"status": "STARTING", "at": at},
            {"status": "RUNNING", "at": at},
            {"status": "FAILED", "at": at,
             "reason": "exited with code 3: the process ended on its own"},
            {"status": "STARTING", "at": at},
            {"status": "FAILED", "at": at,
             "reason": "killed by the kernel OOM killer: memory limit exceeded"},
            {"status": "STARTING", "at": at},
            {"status": "STOPPED", "at": at, "reason": "stopped by request"},
            {"status": "STARTING", "at": at},
            {"status": "FAILED", "at": at,
             "reason": "interrupted by a controller restart"},
            {"status": "STARTING", "at": at},
            {"status": "FAILED", "at": at, "reason": "port 8080 already in use"},
        ]);
        store
            .db
            .lock()
            .execute(
                "UPDATE deployments SET body = ?1, status = 'FAILED' WHERE id = ?2",
                rusqlite::params![body.to_string(), d.id.to_string()],
            )
            .unwrap();
        drop(store);

        let store = SqliteDeploymentStore::open(&path).unwrap();
        let loaded = store.get(&d.id).await.unwrap();
        let reasons: Vec<_> = loaded
            .history
            .iter()
            .filter_map(|c| c.reason.clone())
            .collect();
        assert_eq!(
            reasons,
            [
                StatusReason::Exited { exit_code: Some(3) },
                StatusReason::OomKilled,
                StatusReason::StoppedOnRequest,
                StatusReason::Interrupted { detail: None },
                StatusReason::other("port 8080 already in use"),
            ]
        );
        // And it is written back typed on the next update.
        let mut next = loaded.clone();
        next.apply(&DeploymentEvent::Restarted, OffsetDateTime::now_utc())
            .unwrap();
        let saved = store.update(&next).await.unwrap();
        assert_eq!(store.get(&d.id).await.unwrap(), saved);
        let raw: String = store
            .db
            .lock()
            .query_row(
                "SELECT body FROM deployments WHERE id = ?1",
                rusqlite::params![d.id.to_string()],
                |r| r.get(0),
            )
            .unwrap();
        assert!(raw.contains(r#""code":"oom_killed""#), "{raw}");
    }
}
