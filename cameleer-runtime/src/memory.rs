//! In-memory [`DeploymentStore`], [`ArtifactStore`] and
//! [`QuotaStore`](crate::QuotaStore): for tests, examples and hosts that do
//! not need durability.
//!
//! Both keep their whole state behind one [`std::sync::Mutex`] that is never
//! held across an `.await`, which is what makes each operation atomic.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use cameleer_build::Sha256Digest;
use futures::StreamExt;
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

pub use crate::quota::MemoryQuotaStore;
use crate::{
    AppRef, ArtifactInfo, ArtifactStore, ArtifactUpload, ByteStream, Deployment, DeploymentId,
    DeploymentStore, Error, NewDeployment, Result, StoredArtifact, TenantId,
};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the maps half-updated (every
    // critical section validates first and writes last), so poisoning is
    // ignored.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Deployments in memory.
///
/// Versions come from a per-[`AppRef`] counter that survives
/// [`delete`](Self::delete), so a version is never handed out twice.
///
/// # Examples
///
/// ```
/// use cameleer_runtime::memory::MemoryDeploymentStore;
/// use cameleer_runtime::{AppConfig, AppRef, DeploymentSource, DeploymentStore, NewDeployment, Sha256Digest};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemoryDeploymentStore::new();
/// let app = AppRef::parse("acme", "orders", "dev").unwrap();
/// let new = NewDeployment {
///     artifact: Sha256Digest::of(b"jar"),
///     image: None,
///     source: DeploymentSource::Build,
///     config: AppConfig::default(),
/// };
/// let v1 = store.create(&app, new.clone()).await.unwrap();
/// let v2 = store.create(&app, new).await.unwrap();
/// assert_eq!((v1.version, v2.version), (1, 2));
///
/// // A write based on a stale revision loses.
/// let updated = store.update(&v1).await.unwrap();
/// assert_eq!(store.update(&v1).await.unwrap_err().code(), "conflict");
/// assert_eq!(updated.revision, v1.revision + 1);
/// # });
/// ```
#[derive(Debug, Default)]
pub struct MemoryDeploymentStore {
    state: Mutex<DeploymentState>,
}

#[derive(Debug, Default)]
struct DeploymentState {
    by_id: HashMap<DeploymentId, Deployment>,
    /// Per app: version → id, so listing in version order is a walk.
    by_app: BTreeMap<AppRef, BTreeMap<u64, DeploymentId>>,
    /// The last version handed out per app; never decremented.
    last_version: HashMap<AppRef, u64>,
}

impl MemoryDeploymentStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Removes a deployment, returning it. Its version is not reused.
    pub fn delete(&self, id: &DeploymentId) -> Option<Deployment> {
        let mut st = lock(&self.state);
        let d = st.by_id.remove(id)?;
        if let Some(versions) = st.by_app.get_mut(&d.app) {
            versions.remove(&d.version);
            if versions.is_empty() {
                st.by_app.remove(&d.app);
            }
        }
        Some(d)
    }

    /// How many deployments are stored.
    pub fn len(&self) -> usize {
        lock(&self.state).by_id.len()
    }

    /// Whether the store holds no deployment.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl DeploymentState {
    fn of_app(&self, app: &AppRef) -> impl DoubleEndedIterator<Item = &Deployment> {
        self.by_app
            .get(app)
            .into_iter()
            .flat_map(|versions| versions.values())
            .filter_map(|id| self.by_id.get(id))
    }

    /// The newest deployment of each app `keep` accepts, ordered by tenant,
    /// app, env (the order of `by_app`).
    fn newest_of_apps(&self, keep: impl Fn(&AppRef) -> bool) -> Vec<Deployment> {
        self.by_app
            .iter()
            .filter(|(app, _)| keep(app))
            .filter_map(|(_, versions)| versions.values().next_back())
            .filter_map(|id| self.by_id.get(id).cloned())
            .collect()
    }
}

#[async_trait]
impl DeploymentStore for MemoryDeploymentStore {
    async fn create(&self, app: &AppRef, new: NewDeployment) -> Result<Deployment> {
        let mut st = lock(&self.state);
        let last = st.last_version.entry(app.clone()).or_insert(0);
        *last += 1;
        let version = *last;
        // The time is taken under the lock, so creation times follow versions.
        let d = Deployment::new(
            app.clone(),
            version,
            new.artifact,
            new.image,
            new.source,
            new.config,
            OffsetDateTime::now_utc(),
        );
        st.by_app
            .entry(app.clone())
            .or_default()
            .insert(version, d.id);
        st.by_id.insert(d.id, d.clone());
        Ok(d)
    }

    async fn get(&self, id: &DeploymentId) -> Result<Deployment> {
        lock(&self.state)
            .by_id
            .get(id)
            .cloned()
            .ok_or_else(|| Error::not_found("deployment", id))
    }

    async fn update(&self, deployment: &Deployment) -> Result<Deployment> {
        let mut st = lock(&self.state);
        let stored = st
            .by_id
            .get_mut(&deployment.id)
            .ok_or_else(|| Error::not_found("deployment", deployment.id))?;
        if stored.revision != deployment.revision {
            return Err(Error::Conflict(format!(
                "deployment {} is at revision {}, the update was based on {}",
                deployment.id, stored.revision, deployment.revision
            )));
        }
        if stored.app != deployment.app || stored.version != deployment.version {
            return Err(Error::Conflict(format!(
                "deployment {}: app and version never change",
                deployment.id
            )));
        }
        let mut next = deployment.clone();
        next.revision += 1;
        *stored = next.clone();
        Ok(next)
    }

    async fn list(&self, app: &AppRef) -> Result<Vec<Deployment>> {
        let st = lock(&self.state);
        Ok(st.of_app(app).rev().cloned().collect())
    }

    async fn latest_per_app(&self, tenant: &TenantId) -> Result<Vec<Deployment>> {
        Ok(lock(&self.state).newest_of_apps(|app| &app.tenant == tenant))
    }

    async fn latest_of_every_app(&self) -> Result<Vec<Deployment>> {
        Ok(lock(&self.state).newest_of_apps(|_| true))
    }

    async fn active(&self) -> Result<Vec<Deployment>> {
        let st = lock(&self.state);
        let mut active: Vec<_> = st
            .by_id
            .values()
            .filter(|d| d.status.is_in_progress() || d.status == crate::DeploymentStatus::Running)
            .cloned()
            .collect();
        active.sort_by(|a, b| (&a.app, a.version).cmp(&(&b.app, b.version)));
        Ok(active)
    }
}

/// Artifacts in memory, addressed by the SHA-256 their upload carries
/// ([`ArtifactUpload::sha256`]); they are not hashed again, unless the store
/// is made [`verifying`](Self::verifying).
///
/// Nothing is stored unless the stream ends without error and within the
/// size limit; storing bytes that are already there keeps the one copy.
///
/// # Examples
///
/// ```
/// use bytes::Bytes;
/// use cameleer_runtime::memory::MemoryArtifactStore;
/// use cameleer_runtime::{ArtifactStore, ArtifactUpload, Sha256Digest};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemoryArtifactStore::new();
/// let chunks = vec![Ok(Bytes::from_static(b"PK")), Ok(Bytes::from_static(b"\x03\x04"))];
/// let upload = ArtifactUpload::new(
///     Box::pin(futures::stream::iter(chunks)),
///     Sha256Digest::of(b"PK\x03\x04"),
/// );
/// let info = store.put(upload).await.unwrap();
/// assert_eq!(info.sha256, Sha256Digest::of(b"PK\x03\x04"));
/// assert_eq!(info.size, 4);
/// # });
/// ```
#[derive(Debug, Default)]
pub struct MemoryArtifactStore {
    /// Each artifact with when it was (last) stored.
    blobs: Mutex<HashMap<Sha256Digest, (Bytes, OffsetDateTime)>>,
    max_size: Option<u64>,
    verify: bool,
}

/// The size of the chunks [`MemoryArtifactStore::get`] yields.
const READ_CHUNK: usize = 64 << 10;

impl MemoryArtifactStore {
    /// An empty store without a size limit.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store that refuses artifacts larger than `max_size` bytes
    /// ([`Error::ArtifactTooLarge`]).
    pub fn with_max_size(max_size: u64) -> Self {
        Self {
            max_size: Some(max_size),
            ..Self::default()
        }
    }

    /// The same store, hashing what it stores to check the digest each
    /// upload carries (a mismatch is `checksum_mismatch` and stores
    /// nothing). The [`Platform`](crate::Platform) hands it the validator's
    /// digest, so this only costs a second hash; for tests of hosts that
    /// build uploads themselves.
    pub fn verifying(mut self) -> Self {
        self.verify = true;
        self
    }

    /// How many artifacts are stored.
    pub fn len(&self) -> usize {
        lock(&self.blobs).len()
    }

    /// Whether the store holds no artifact.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl ArtifactStore for MemoryArtifactStore {
    async fn put(&self, mut upload: ArtifactUpload) -> Result<ArtifactInfo> {
        let mut hasher = self.verify.then(Sha256::new);
        let mut buf = BytesMut::new();
        while let Some(chunk) = upload.next().await {
            let chunk = chunk.map_err(|e| Error::storage("reading the artifact stream", e))?;
            let size = (buf.len() + chunk.len()) as u64;
            if let Some(limit) = self.max_size
                && size > limit
            {
                return Err(Error::ArtifactTooLarge { limit });
            }
            if let Some(h) = hasher.as_mut() {
                h.update(&chunk);
            }
            buf.extend_from_slice(&chunk);
        }
        let sha256 = upload.finished_sha256()?;
        if let Some(h) = hasher {
            let actual: Sha256Digest = h.finalize().into();
            if actual != sha256 {
                return Err(Error::ChecksumMismatch {
                    expected: sha256,
                    actual,
                });
            }
        }
        let info = ArtifactInfo {
            sha256,
            size: buf.len() as u64,
        };
        let now = OffsetDateTime::now_utc();
        lock(&self.blobs)
            .entry(info.sha256)
            .and_modify(|(_, at)| *at = now)
            .or_insert_with(|| (buf.freeze(), now));
        Ok(info)
    }

    async fn get(&self, sha256: &Sha256Digest) -> Result<ByteStream> {
        let blob = lock(&self.blobs)
            .get(sha256)
            .map(|(b, _)| b.clone())
            .ok_or_else(|| Error::not_found("artifact", sha256))?;
        let chunks: Vec<std::io::Result<Bytes>> = (0..blob.len())
            .step_by(READ_CHUNK)
            .map(|at| Ok(blob.slice(at..blob.len().min(at + READ_CHUNK))))
            .collect();
        Ok(Box::pin(futures::stream::iter(chunks)))
    }

    async fn stat(&self, sha256: &Sha256Digest) -> Result<Option<ArtifactInfo>> {
        Ok(lock(&self.blobs).get(sha256).map(|(b, _)| ArtifactInfo {
            sha256: *sha256,
            size: b.len() as u64,
        }))
    }

    async fn list(&self) -> Result<Vec<StoredArtifact>> {
        Ok(lock(&self.blobs)
            .iter()
            .map(|(sha256, (b, at))| StoredArtifact {
                info: ArtifactInfo {
                    sha256: *sha256,
                    size: b.len() as u64,
                },
                stored_at: *at,
            })
            .collect())
    }

    async fn delete(&self, sha256: &Sha256Digest) -> Result<bool> {
        Ok(lock(&self.blobs).remove(sha256).is_some())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use futures::TryStreamExt;

    use super::*;
    use crate::{AppConfig, DeploymentEvent, DeploymentSource, DeploymentStatus};

    fn app(name: &str) -> AppRef {
        AppRef::parse("acme", name, "dev").unwrap()
    }

    fn new_deployment() -> NewDeployment {
        NewDeployment {
            artifact: Sha256Digest::of(b"jar"),
            image: None,
            source: DeploymentSource::Build,
            config: AppConfig::default(),
        }
    }

    fn stream(chunks: Vec<std::io::Result<&'static [u8]>>) -> ByteStream {
        Box::pin(futures::stream::iter(
            chunks.into_iter().map(|c| c.map(Bytes::from_static)),
        ))
    }

    /// An upload of `chunks` carrying the digest of their bytes (up to an
    /// error), as the platform's validator computes it.
    fn upload(chunks: Vec<std::io::Result<&'static [u8]>>) -> ArtifactUpload {
        let bytes: Vec<u8> = chunks
            .iter()
            .filter_map(|c| c.as_ref().ok())
            .flat_map(|c| c.iter().copied())
            .collect();
        ArtifactUpload::new(stream(chunks), Sha256Digest::of(&bytes))
    }

    async fn read_back(store: &MemoryArtifactStore, sha256: &Sha256Digest) -> Vec<Bytes> {
        store
            .get(sha256)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn versions_are_per_app_monotonic_and_never_reused() {
        let store = MemoryDeploymentStore::new();
        let a1 = store.create(&app("a"), new_deployment()).await.unwrap();
        let a2 = store.create(&app("a"), new_deployment()).await.unwrap();
        let b1 = store.create(&app("b"), new_deployment()).await.unwrap();
        assert_eq!((a1.version, a2.version, b1.version), (1, 2, 1));
        assert_eq!(a1.status, DeploymentStatus::Building);

        store.delete(&a2.id).unwrap();
        store.delete(&a1.id).unwrap();
        assert!(store.list(&app("a")).await.unwrap().is_empty());
        let a3 = store.create(&app("a"), new_deployment()).await.unwrap();
        assert_eq!(a3.version, 3);
        assert_eq!(store.get(&a2.id).await.unwrap_err().code(), "not_found");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_creates_get_distinct_versions() {
        let store = Arc::new(MemoryDeploymentStore::new());
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { store.create(&app("a"), new_deployment()).await })
            })
            .collect();
        let mut versions = Vec::new();
        for t in tasks {
            versions.push(t.await.unwrap().unwrap().version);
        }
        versions.sort_unstable();
        assert_eq!(versions, (1..=64).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn updates_are_conditional_on_the_revision() {
        let store = MemoryDeploymentStore::new();
        let d = store.create(&app("a"), new_deployment()).await.unwrap();
        let mut first = d.clone();
        first
            .apply(&DeploymentEvent::BuildSucceeded, OffsetDateTime::now_utc())
            .unwrap();
        let mut second = d.clone();
        second
            .apply(
                &DeploymentEvent::Stopped {
                    reason: crate::StatusReason::StoppedOnRequest,
                },
                OffsetDateTime::now_utc(),
            )
            .unwrap();

        let written = store.update(&first).await.unwrap();
        assert_eq!(written.revision, 1);
        let err = store.update(&second).await.unwrap_err();
        assert_eq!(err.code(), "conflict");
        assert_eq!(store.get(&d.id).await.unwrap(), written);

        // Re-read and retry wins.
        let mut retry = store.get(&d.id).await.unwrap();
        retry
            .apply(
                &DeploymentEvent::Stopped {
                    reason: crate::StatusReason::StoppedOnRequest,
                },
                OffsetDateTime::now_utc(),
            )
            .unwrap();
        assert_eq!(store.update(&retry).await.unwrap().revision, 2);
    }

    #[tokio::test]
    async fn updates_cannot_move_a_deployment() {
        let store = MemoryDeploymentStore::new();
        let d = store.create(&app("a"), new_deployment()).await.unwrap();
        let mut moved = d.clone();
        moved.version = 7;
        assert_eq!(store.update(&moved).await.unwrap_err().code(), "conflict");
        let mut unknown = d.clone();
        unknown.id = DeploymentId::new_random();
        assert_eq!(
            store.update(&unknown).await.unwrap_err().code(),
            "not_found"
        );
    }

    #[tokio::test]
    async fn list_is_newest_first_and_latest_is_per_app_and_env() {
        let store = MemoryDeploymentStore::new();
        for _ in 0..3 {
            store.create(&app("b"), new_deployment()).await.unwrap();
        }
        store.create(&app("a"), new_deployment()).await.unwrap();
        let prod = AppRef::parse("acme", "a", "prod").unwrap();
        store.create(&prod, new_deployment()).await.unwrap();
        let other = AppRef::parse("globex", "a", "dev").unwrap();
        store.create(&other, new_deployment()).await.unwrap();

        let versions: Vec<_> = store
            .list(&app("b"))
            .await
            .unwrap()
            .iter()
            .map(|d| d.version)
            .collect();
        assert_eq!(versions, [3, 2, 1]);

        let latest = store
            .latest_per_app(&"acme".parse().unwrap())
            .await
            .unwrap();
        let seen: Vec<_> = latest
            .iter()
            .map(|d| (d.app.to_string(), d.version))
            .collect();
        assert_eq!(
            seen,
            [
                ("acme/a/dev".to_string(), 1),
                ("acme/a/prod".to_string(), 1),
                ("acme/b/dev".to_string(), 3)
            ]
        );

        let everywhere: Vec<_> = store
            .latest_of_every_app()
            .await
            .unwrap()
            .iter()
            .map(|d| (d.app.to_string(), d.version))
            .collect();
        assert_eq!(
            everywhere,
            [
                ("acme/a/dev".to_string(), 1),
                ("acme/a/prod".to_string(), 1),
                ("acme/b/dev".to_string(), 3),
                ("globex/a/dev".to_string(), 1)
            ]
        );
    }

    #[tokio::test]
    async fn active_holds_building_starting_and_running_only() {
        let store = MemoryDeploymentStore::new();
        let now = OffsetDateTime::now_utc;
        let building = store.create(&app("a"), new_deployment()).await.unwrap();
        let mut running = store.create(&app("b"), new_deployment()).await.unwrap();
        running
            .apply(&DeploymentEvent::BuildSucceeded, now())
            .unwrap();
        running.apply(&DeploymentEvent::Healthy, now()).unwrap();
        store.update(&running).await.unwrap();
        let mut failed = store.create(&app("c"), new_deployment()).await.unwrap();
        failed
            .apply(
                &DeploymentEvent::BuildFailed {
                    reason: crate::StatusReason::other("no"),
                },
                now(),
            )
            .unwrap();
        store.update(&failed).await.unwrap();

        let ids: Vec<_> = store.active().await.unwrap().iter().map(|d| d.id).collect();
        assert_eq!(ids, [building.id, running.id]);
    }

    #[tokio::test]
    async fn artifacts_are_content_addressed_and_idempotent() {
        let store = MemoryArtifactStore::new();
        let info = store
            .put(upload(vec![Ok(b"hello "), Ok(b"world")]))
            .await
            .unwrap();
        assert_eq!(info.sha256, Sha256Digest::of(b"hello world"));
        assert_eq!(info.size, 11);
        let again = store.put(upload(vec![Ok(b"hello world")])).await.unwrap();
        assert_eq!(again, info);
        assert_eq!(store.len(), 1);

        assert_eq!(
            read_back(&store, &info.sha256).await.concat(),
            b"hello world"
        );
        assert_eq!(store.stat(&info.sha256).await.unwrap(), Some(info));
    }

    #[tokio::test]
    async fn the_uploads_digest_is_trusted_unless_the_store_verifies() {
        let claimed = Sha256Digest::of(b"something else");
        let lying = || ArtifactUpload::new(stream(vec![Ok(b"hello")]), claimed);
        // Not hashed again: filed under the digest the upload carries.
        let store = MemoryArtifactStore::new();
        assert_eq!(store.put(lying()).await.unwrap().sha256, claimed);
        // A verifying store hashes, refuses, and keeps nothing.
        let store = MemoryArtifactStore::new().verifying();
        let err = store.put(lying()).await.unwrap_err();
        assert_eq!(err.code(), "checksum_mismatch", "{err}");
        assert!(store.is_empty());
        let info = store.put(upload(vec![Ok(b"hello")])).await.unwrap();
        assert_eq!(info.sha256, Sha256Digest::of(b"hello"));
    }

    #[tokio::test]
    async fn an_upload_that_ends_without_its_digest_is_an_internal_error() {
        let store = MemoryArtifactStore::new();
        let unknown =
            ArtifactUpload::with_digest_from(stream(vec![Ok(b"hello")]), std::sync::Arc::default());
        let err = store.put(unknown).await.unwrap_err();
        assert_eq!(err.code(), "internal", "{err}");
        assert!(store.is_empty());
    }

    #[tokio::test]
    async fn a_stream_error_stores_nothing() {
        let store = MemoryArtifactStore::new();
        let err = store
            .put(upload(vec![
                Ok(b"PK"),
                Err(std::io::Error::other("validation failed")),
            ]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "storage_error");
        assert!(store.is_empty());
        let digest = Sha256Digest::of(b"PK");
        assert_eq!(store.stat(&digest).await.unwrap(), None);
        assert_eq!(store.get(&digest).await.err().unwrap().code(), "not_found");
    }

    #[tokio::test]
    async fn the_size_limit_is_enforced_while_reading() {
        let store = MemoryArtifactStore::with_max_size(4);
        store.put(upload(vec![Ok(b"12"), Ok(b"34")])).await.unwrap();
        let err = store
            .put(upload(vec![Ok(b"123"), Ok(b"45")]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "artifact_too_large");
        assert_eq!(store.len(), 1);
    }

    #[tokio::test]
    async fn large_artifacts_are_read_back_in_chunks() {
        let store = MemoryArtifactStore::new();
        let data: &'static [u8] = Box::leak(vec![7u8; READ_CHUNK * 2 + 1].into_boxed_slice());
        let info = store.put(upload(vec![Ok(data)])).await.unwrap();
        let chunks = read_back(&store, &info.sha256).await;
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks.concat(), data);
    }
}
