//! [`check_quota_store`]: the contract every [`QuotaStore`] keeps.

use crate::{ArtifactCharge, Quota, QuotaStore, Sha256Digest, TenantId};

/// Checks `store` against the [`QuotaStore`] contract: quotas default to
/// unlimited and read back as set; an artifact is charged once per tenant
/// and per tenant only; a charge over the limit changes nothing; releases
/// and forgets take charges off. `store` must be empty. Panics on the first
/// broken rule.
///
/// # Examples
///
/// ```
/// use cameleer_runtime::memory::MemoryQuotaStore;
/// use cameleer_runtime::testkit::check_quota_store;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// check_quota_store(&MemoryQuotaStore::new()).await;
/// # });
/// ```
pub async fn check_quota_store(store: &dyn QuotaStore) {
    let a: TenantId = "quota-check-a".parse().expect("a valid tenant");
    let b: TenantId = "quota-check-b".parse().expect("a valid tenant");
    assert_eq!(store.quota(&a).await.unwrap(), Quota::unlimited());
    let quota = Quota {
        artifact_bytes: Some(100),
        apps: Some(3),
        ..Quota::default()
    };
    store.set_quota(&a, quota).await.unwrap();
    assert_eq!(store.quota(&a).await.unwrap(), quota);
    assert_eq!(store.quota(&b).await.unwrap(), Quota::unlimited());

    let jar = Sha256Digest::of(b"jar");
    let charge = |t: &TenantId, sha: Sha256Digest, size, limit| {
        let t = t.clone();
        async move { store.charge_artifact(&t, &sha, size, limit).await.unwrap() }
    };
    assert_eq!(
        charge(&a, jar, 60, Some(100)).await,
        ArtifactCharge::Charged { total: 60 }
    );
    assert_eq!(
        charge(&a, jar, 60, Some(100)).await,
        ArtifactCharge::AlreadyCharged { total: 60 },
        "an artifact is charged once per tenant"
    );
    let other = Sha256Digest::of(b"other");
    assert_eq!(
        charge(&a, other, 41, Some(100)).await,
        ArtifactCharge::OverLimit { total: 60 }
    );
    assert_eq!(store.artifact_bytes(&a).await.unwrap(), 60);
    assert!(store.artifact_charged(&a, &jar).await.unwrap());
    assert!(
        !store.artifact_charged(&a, &other).await.unwrap(),
        "refused over the limit: not the tenant's"
    );
    assert!(
        !store.artifact_charged(&b, &jar).await.unwrap(),
        "charged to one tenant is not charged to another"
    );
    assert_eq!(
        charge(&b, jar, 60, None).await,
        ArtifactCharge::Charged { total: 60 },
        "another tenant uploading the same JAR is charged too"
    );
    assert!(store.artifact_charged(&b, &jar).await.unwrap());
    store.release_artifact(&a, &jar).await.unwrap();
    assert_eq!(store.artifact_bytes(&a).await.unwrap(), 0);
    assert!(!store.artifact_charged(&a, &jar).await.unwrap());
    assert_eq!(store.artifact_bytes(&b).await.unwrap(), 60);
    store.forget_artifact(&jar).await.unwrap();
    assert_eq!(store.artifact_bytes(&b).await.unwrap(), 0);
    assert!(!store.artifact_charged(&b, &jar).await.unwrap());
}
