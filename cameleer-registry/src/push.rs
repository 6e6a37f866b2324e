//! Pushing an assembled image: every blob the repository lacks, then the
//! manifest, so no manifest ever names a blob the registry does not have.

use std::fmt;
use std::sync::Arc;

use cameleer_build::oci::{BlobSource, OciImage};
use cameleer_build::{ImageRef, Sha256Digest};
use futures::{StreamExt, TryStreamExt};

use crate::auth::Scopes;
use crate::client::UploadStart;
use crate::{RegistryClient, RegistryError};

/// What happened during a push, as it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PushEvent {
    /// The repository already had the blob: nothing sent.
    Skipped {
        /// The blob.
        digest: Sha256Digest,
    },
    /// The registry mounted the blob from another repository: nothing sent.
    Mounted {
        /// The blob.
        digest: Sha256Digest,
        /// The repository it came from.
        from: String,
    },
    /// An upload starts.
    Uploading {
        /// The blob.
        digest: Sha256Digest,
        /// Its size.
        size: u64,
    },
    /// Bytes of an upload went out (after every chunk of 256 KiB).
    Sent {
        /// The blob.
        digest: Sha256Digest,
        /// Bytes sent so far.
        sent: u64,
        /// Its size.
        size: u64,
    },
    /// The blob is committed.
    Uploaded {
        /// The blob.
        digest: Sha256Digest,
        /// Its size.
        size: u64,
    },
    /// The manifest is in, under this tag or digest.
    ManifestPushed {
        /// The tag or digest.
        reference: String,
        /// The manifest's digest.
        digest: Sha256Digest,
    },
}

/// A callback for [`PushEvent`]s. Called from the push's tasks: keep it
/// quick.
pub type PushProgress = Arc<dyn Fn(&PushEvent) + Send + Sync>;

/// How to push.
#[derive(Clone, Default)]
pub struct PushOptions {
    /// A repository of the same registry to mount missing blobs from
    /// (`POST …/blobs/uploads/?mount=<digest>&from=<repo>`), e.g. the one
    /// the base and agent layers were pushed to. When the registry cannot
    /// mount a blob it opens an upload session instead, which the push
    /// uses: trying costs no extra request.
    pub mount_from: Option<String>,
    /// Where to report progress.
    pub progress: Option<PushProgress>,
}

impl fmt::Debug for PushOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PushOptions")
            .field("mount_from", &self.mount_from)
            .field("progress", &self.progress.as_ref().map(|_| "…"))
            .finish()
    }
}

/// How one blob got into the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobOutcome {
    /// It was there already.
    Skipped,
    /// It was mounted from another repository.
    Mounted,
    /// Its bytes were uploaded.
    Uploaded,
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushReport {
    /// The manifest's digest: the image is `<registry>/<repo>@<digest>`.
    pub manifest_digest: Sha256Digest,
    /// Each blob (layers base first, then the config), its size and how it
    /// got there.
    pub blobs: Vec<(Sha256Digest, u64, BlobOutcome)>,
    /// Bytes of blobs uploaded (manifests not counted).
    pub bytes_uploaded: u64,
}

impl PushReport {
    /// How many blobs went each way: `(skipped, mounted, uploaded)`.
    pub fn counts(&self) -> (usize, usize, usize) {
        let n = |o| self.blobs.iter().filter(|b| b.2 == o).count();
        (
            n(BlobOutcome::Skipped),
            n(BlobOutcome::Mounted),
            n(BlobOutcome::Uploaded),
        )
    }
}

impl RegistryClient {
    /// Pushes `image` to `repo` and tags it with each of `tags` (with no
    /// tag, the manifest is put under its digest).
    ///
    /// Blobs first, a few at a time
    /// ([`RegistryConfig::concurrency`](crate::RegistryConfig::concurrency)):
    /// one the repository has is skipped (`HEAD`), one it lacks is mounted
    /// from [`PushOptions::mount_from`] when the registry can, and
    /// uploaded otherwise, streamed from its file and hashed on the way.
    /// The manifest goes last, only when every blob is in: a push cut
    /// short (the registry gone, the disk full) leaves no manifest, and
    /// running it again uploads only what is still missing.
    pub async fn push_image(
        &self,
        repo: &str,
        image: &OciImage,
        tags: &[&str],
        options: &PushOptions,
    ) -> Result<PushReport, RegistryError> {
        check_repository(repo)?;
        for tag in tags {
            check_tag(repo, tag)?;
        }
        if let Some(from) = &options.mount_from {
            check_repository(from)?;
        }
        let pull_from: Vec<&str> = options.mount_from.iter().map(String::as_str).collect();
        let scopes = Scopes::push(repo, &pull_from);
        let emit = |e: PushEvent| {
            if let Some(p) = &options.progress {
                p(&e);
            }
        };

        let mut blobs: Vec<(Sha256Digest, u64, BlobSource)> = image
            .layers
            .iter()
            .map(|l| (l.layer.digest, l.layer.size, l.source.clone()))
            .collect();
        blobs.push((
            image.config.digest,
            image.config.size(),
            BlobSource::Memory(image.config.bytes.clone()),
        ));
        // The same layer twice in one image is pushed once.
        let mut unique: Vec<(Sha256Digest, u64, BlobSource)> = Vec::new();
        for b in blobs {
            if !unique.iter().any(|u| u.0 == b.0) {
                unique.push(b);
            }
        }
        let concurrency = self.config().concurrency.max(1);
        let outcomes: Vec<(Sha256Digest, u64, BlobOutcome)> =
            futures::stream::iter(unique.into_iter().map(|(digest, size, source)| {
                let scopes = &scopes;
                let emit = &emit;
                async move {
                    let how = self
                        .push_blob(repo, digest, size, &source, scopes, options, emit)
                        .await?;
                    Ok::<_, RegistryError>((digest, size, how))
                }
            }))
            .buffer_unordered(concurrency)
            .try_collect()
            .await?;

        let manifest = &image.manifest;
        let digest_ref = manifest.digest.oci();
        let references: Vec<&str> = if tags.is_empty() {
            vec![digest_ref.as_str()]
        } else {
            tags.to_vec()
        };
        for reference in references {
            let digest = self
                .put_manifest_as(repo, reference, &manifest.bytes, &scopes)
                .await?;
            emit(PushEvent::ManifestPushed {
                reference: reference.to_string(),
                digest,
            });
        }
        // Report in the image's order, whatever order the uploads ended in.
        let mut ordered = Vec::with_capacity(outcomes.len());
        for l in image
            .layers
            .iter()
            .map(|l| l.layer.digest)
            .chain([image.config.digest])
        {
            if let Some(o) = outcomes.iter().find(|o| o.0 == l)
                && !ordered
                    .iter()
                    .any(|x: &(Sha256Digest, u64, BlobOutcome)| x.0 == l)
            {
                ordered.push(*o);
            }
        }
        let bytes_uploaded = ordered
            .iter()
            .filter(|o| o.2 == BlobOutcome::Uploaded)
            .map(|o| o.1)
            .sum();
        Ok(PushReport {
            manifest_digest: manifest.digest,
            blobs: ordered,
            bytes_uploaded,
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn push_blob(
        &self,
        repo: &str,
        digest: Sha256Digest,
        size: u64,
        source: &BlobSource,
        scopes: &Scopes,
        options: &PushOptions,
        emit: &(dyn Fn(PushEvent) + Sync),
    ) -> Result<BlobOutcome, RegistryError> {
        if self.blob_exists_as(repo, &digest, scopes).await? {
            emit(PushEvent::Skipped { digest });
            return Ok(BlobOutcome::Skipped);
        }
        let mount = options
            .mount_from
            .as_deref()
            .filter(|from| *from != repo)
            .map(|from| (&digest, from));
        let session = match self.start_upload(repo, mount, scopes).await? {
            UploadStart::Mounted => {
                emit(PushEvent::Mounted {
                    digest,
                    from: options.mount_from.clone().unwrap_or_default(),
                });
                return Ok(BlobOutcome::Mounted);
            }
            UploadStart::Session(url) => url,
        };
        emit(PushEvent::Uploading { digest, size });
        let on_bytes = options.progress.clone().map(|p| {
            Arc::new(move |sent| p(&PushEvent::Sent { digest, sent, size }))
                as Arc<dyn Fn(u64) + Send + Sync>
        });
        self.upload(session, &digest, size, source, scopes, on_bytes)
            .await?;
        emit(PushEvent::Uploaded { digest, size });
        Ok(BlobOutcome::Uploaded)
    }
}

/// A repository name the registry accepts (lowercase components of
/// `[a-z0-9]` with `.`, `_`, `__`, `-` between, joined by `/`).
pub(crate) fn check_repository(repo: &str) -> Result<(), RegistryError> {
    ImageRef::new(None, repo, None, None)
        .map(|_| ())
        .map_err(|e| RegistryError::config("repository", format!("{repo:?}: {e}")))
}

fn check_tag(repo: &str, tag: &str) -> Result<(), RegistryError> {
    ImageRef::new(None, repo, Some(tag), None)
        .map(|_| ())
        .map_err(|e| RegistryError::config("tag", format!("{tag:?}: {e}")))
}
