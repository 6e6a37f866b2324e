//! Streaming uploads: validate and store in one pass, store nothing on
//! rejection.
//!
//! The upload stream is teed: each chunk goes to the validator (a blocking
//! function on `spawn_blocking`, fed through a bounded channel) and on to
//! [`ArtifactStore::put`]. The stream `put` reads ends with an error as soon
//! as the upload is rejected, and its end-of-stream is only yielded once the
//! validator has accepted every byte, so a store that honours its contract
//! (commit only on a clean end) never keeps a rejected JAR. Just before that
//! end the validator's SHA-256 is set on the [`ArtifactUpload`], so the store
//! files the JAR under it without hashing it again: an upload is hashed
//! once. Memory stays bounded: at most the channel's few chunks are in
//! flight.
//!
//! The tenant's artifact bytes are charged at the same point, after
//! validation and before the end is yielded: an upload over the quota ends
//! with an error instead, so the store commits nothing, and a store that
//! fails after the charge (a full disk) has the charge taken back.

use std::io::{self, Read};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::{Buf, Bytes};
use cameleer_build::{Sha256Digest, ValidatedJar, ValidationError, ValidationPolicy};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::{
    ArtifactCharge, ArtifactStore, ArtifactUpload, ByteStream, Error, QuotaKind, QuotaStore,
    Result, TenantId,
};

/// Who an upload is charged to, and the tenant's artifact-bytes quota.
pub(crate) struct Charge {
    pub(crate) quotas: Arc<dyn QuotaStore>,
    pub(crate) tenant: TenantId,
    pub(crate) limit: Option<u64>,
}

/// An accepted and stored upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadedArtifact {
    /// Its SHA-256: the id to deploy it by.
    pub sha256: Sha256Digest,
    /// Its size in bytes.
    pub size: u64,
    /// What validation found: main class, framework, findings.
    pub jar: ValidatedJar,
}

/// The validator, in one place so that it is a one-line change.
fn validate(reader: impl Read, policy: &ValidationPolicy) -> Result<ValidatedJar, ValidationError> {
    cameleer_build::validate_jar(reader, policy)
}

/// Validates `data` while `store` stores it; see the module docs.
pub(crate) async fn upload(
    store: &dyn ArtifactStore,
    data: ByteStream,
    policy: &ValidationPolicy,
    queue_chunks: usize,
    charge: Charge,
) -> Result<UploadedArtifact> {
    let policy = policy.clone();
    let limit = policy.limits.max_upload_bytes;
    let (tx, rx) = mpsc::channel(queue_chunks.max(1));
    let validator = tokio::task::spawn_blocking(move || {
        validate(
            ChannelReader {
                rx,
                current: Bytes::new(),
            },
            &policy,
        )
    });
    let verdict = Arc::new(Mutex::new(None));
    let digest = Arc::new(OnceLock::new());
    let charged = Arc::new(OnceLock::new());
    let quotas = charge.quotas.clone();
    let tenant = charge.tenant.clone();
    let tee = Tee {
        charge,
        charged: charged.clone(),
        input: data,
        to_validator: Some(tx),
        validator: Some(validator),
        seen: 0,
        limit,
        verdict: verdict.clone(),
        digest: digest.clone(),
    };
    let stream = futures::stream::unfold(tee, |mut tee| async move {
        let item = tee.next().await?;
        Some((item, tee))
    });
    let stored = store
        .put(ArtifactUpload::with_digest_from(Box::pin(stream), digest))
        .await;
    let verdict = verdict.lock().unwrap_or_else(|p| p.into_inner()).take();
    if stored.is_err()
        && let Some(sha256) = charged.get()
        && let Err(e) = quotas.release_artifact(&tenant, sha256).await
    {
        tracing::error!(%sha256, "the store failed and the charge could not be taken back: {e}");
    }
    match (stored, verdict) {
        // Our verdict names the problem; the store only saw an I/O error.
        (_, Some(Err(e))) => Err(e),
        (Err(e), _) => Err(e),
        (Ok(info), Some(Ok(jar))) if info.sha256 == jar.sha256 && info.size == jar.size => {
            Ok(UploadedArtifact {
                sha256: info.sha256,
                size: info.size,
                jar,
            })
        }
        (Ok(info), Some(Ok(jar))) => Err(Error::Internal(format!(
            "the artifact store stored {} ({} bytes) but the upload was {} ({} bytes)",
            info.sha256, info.size, jar.sha256, jar.size
        ))),
        (Ok(info), None) => Err(Error::Internal(format!(
            "the artifact store kept {} without reading the upload to its end",
            info.sha256
        ))),
    }
}

/// The stream handed to the store.
struct Tee {
    charge: Charge,
    /// Set when this upload charged the tenant for a new artifact.
    charged: Arc<OnceLock<Sha256Digest>>,
    input: ByteStream,
    /// `None` once the validator has been told the upload ended.
    to_validator: Option<mpsc::Sender<Bytes>>,
    validator: Option<JoinHandle<Result<ValidatedJar, ValidationError>>>,
    seen: u64,
    limit: u64,
    /// Set exactly once: the accepted JAR at the end, or the rejection.
    verdict: Arc<Mutex<Option<Result<ValidatedJar>>>>,
    /// The validator's SHA-256, set before the clean end is yielded.
    digest: Arc<OnceLock<Sha256Digest>>,
}

impl Tee {
    async fn next(&mut self) -> Option<io::Result<Bytes>> {
        // Settled: the stream has ended (cleanly or with an error).
        self.validator.as_ref()?;
        match self.input.next().await {
            Some(Ok(chunk)) => {
                self.seen += chunk.len() as u64;
                if self.seen > self.limit {
                    let limit = self.limit;
                    return Some(self.reject(Error::ArtifactTooLarge { limit }));
                }
                if let Some(tx) = &self.to_validator
                    && tx.send(chunk.clone()).await.is_err()
                {
                    // The validator stopped reading: it has a verdict.
                    let early = match self.verdict().await {
                        Err(e) => e,
                        Ok(_) => Error::Internal(
                            "the validator accepted the upload before reading all of it".into(),
                        ),
                    };
                    return Some(self.reject(early));
                }
                Some(Ok(chunk))
            }
            Some(Err(source)) => Some(self.reject(Error::UploadFailed { source })),
            None => {
                // Closing the channel is the validator's end of input.
                self.to_validator = None;
                let accepted = match self.verdict().await {
                    Ok(jar) => self.charge(&jar).await.map(|()| jar),
                    Err(e) => Err(e),
                };
                match accepted {
                    Ok(jar) => {
                        // The store reads it once it sees the end.
                        let _ = self.digest.set(jar.sha256);
                        self.settle(Ok(jar));
                        None
                    }
                    Err(e) => Some(self.reject(e)),
                }
            }
        }
    }

    /// Charges the tenant for the accepted JAR, or refuses it over quota.
    async fn charge(&mut self, jar: &ValidatedJar) -> Result<()> {
        let Charge {
            quotas,
            tenant,
            limit,
        } = &self.charge;
        match quotas
            .charge_artifact(tenant, &jar.sha256, jar.size, *limit)
            .await?
        {
            ArtifactCharge::Charged { .. } => {
                let _ = self.charged.set(jar.sha256);
                Ok(())
            }
            ArtifactCharge::AlreadyCharged { .. } => Ok(()),
            ArtifactCharge::OverLimit { total } => Err(Error::QuotaExceeded {
                tenant: tenant.clone(),
                kind: QuotaKind::ArtifactBytes,
                limit: limit.unwrap_or(u64::MAX),
                requested: total.saturating_add(jar.size),
            }),
        }
    }

    async fn verdict(&mut self) -> Result<ValidatedJar> {
        self.to_validator = None;
        let Some(validator) = self.validator.as_mut() else {
            return Err(Error::Internal("the validator was asked twice".into()));
        };
        match validator.await {
            Ok(result) => result.map_err(Error::from),
            Err(e) => Err(Error::Internal(format!("the validator failed: {e}"))),
        }
    }

    /// Records the rejection and ends the stream with an error, so the store
    /// commits nothing. Dropping the sender lets a validator still reading
    /// see the end of its input and finish.
    fn reject(&mut self, e: Error) -> io::Result<Bytes> {
        let err = io::Error::new(io::ErrorKind::InvalidData, e.to_string());
        self.settle(Err(e));
        Err(err)
    }

    fn settle(&mut self, verdict: Result<ValidatedJar>) {
        self.to_validator = None;
        self.validator = None;
        *self.verdict.lock().unwrap_or_else(|p| p.into_inner()) = Some(verdict);
    }
}

/// The validator's `Read` over the channel; runs on a blocking thread.
struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}
