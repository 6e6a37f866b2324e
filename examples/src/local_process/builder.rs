//! [`LocalJarBuilder`]: the "image" of a local process is its JAR on disk.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use cameleer_runtime::{
    BuildSpec, BuiltImage, ByteStream, Error, ImageBuilder, ImageRef, ProgressSink, Result,
    Sha256Digest,
};

use super::jar_path;
use crate::storage::hashed_file::{Step, WriteFailure, write_hashed};

/// An [`ImageBuilder`] that stores the JAR as `<root>/images/<sha256>.jar`.
///
/// The bytes are streamed to a temporary file in the same directory while
/// they are hashed, and renamed into place only when they hash to
/// `spec.artifact` (a mismatch is `build_failed`, and nothing is left
/// behind). A JAR already in place is not written again (`cached`).
///
/// The image is `localhost/cameleer-local/<tenant>/<app>:v<version>`
/// pinned to the JAR's SHA-256; [`LocalProcessOrchestrator`] finds the JAR
/// by that digest, so a promoted image runs the very same file.
///
/// [`LocalProcessOrchestrator`]: super::LocalProcessOrchestrator
///
/// # Examples
///
/// ```
/// use bytes::Bytes;
/// use cameleer_examples::local_process::LocalJarBuilder;
/// use cameleer_runtime::{AppRef, BuildSpec, DeploymentId, ImageBuilder, ProgressSink, Sha256Digest};
/// use futures::StreamExt;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let root = tempfile::tempdir().unwrap();
/// let builder = LocalJarBuilder::new(root.path());
/// let jar = b"not really a jar, but the builder only stores bytes";
/// let spec = BuildSpec {
///     app: AppRef::parse("acme", "orders", "dev").unwrap(),
///     deployment: DeploymentId::new_random(),
///     version: 3,
///     artifact: Sha256Digest::of(jar),
///     artifact_size: jar.len() as u64,
/// };
/// let bytes = futures::stream::iter([Ok(Bytes::from_static(jar))]).boxed();
/// let built = builder.build(&spec, bytes, ProgressSink::discard(spec.deployment)).await.unwrap();
/// assert_eq!(built.image.digest(), Some(&spec.artifact));
/// assert_eq!(built.image.tag(), Some("v3"));
/// assert!(builder.jar_path(&spec.artifact).is_file());
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct LocalJarBuilder {
    root: PathBuf,
}

impl LocalJarBuilder {
    /// A builder storing JARs under `root/images` (the same `root` as the
    /// orchestrator's [`LocalProcessOptions::root`](super::LocalProcessOptions::root)).
    pub fn new(root: impl AsRef<Path>) -> Self {
        Self {
            root: root.as_ref().to_path_buf(),
        }
    }

    /// Where the JAR with this SHA-256 is stored (whether or not it is).
    pub fn jar_path(&self, sha256: &Sha256Digest) -> PathBuf {
        jar_path(&self.root, sha256)
    }

    /// The image of `spec`: named after the app, pinned to the JAR.
    pub fn image_of(spec: &BuildSpec) -> Result<ImageRef> {
        let repository = format!("cameleer-local/{}/{}", spec.app.tenant, spec.app.app);
        let tag = format!("v{}", spec.version);
        ImageRef::new(
            Some("localhost"),
            &repository,
            Some(&tag),
            Some(spec.artifact),
        )
        .map_err(|e| Error::BuildFailed(format!("cannot name the image: {e}")))
    }

    /// Writes `jar` to `tmp`, hashing it; returns its digest and size.
    async fn write(tmp: &Path, jar: ByteStream, limit: u64) -> Result<(Sha256Digest, u64)> {
        write_hashed(tmp, jar, limit).await.map_err(|f| match f {
            WriteFailure::TooLarge => Error::BuildFailed(format!(
                "the JAR is larger than the {limit} bytes the spec announced"
            )),
            WriteFailure::Io(step, e) => {
                let what = match step {
                    Step::Create => "creating a temporary file",
                    Step::Read => "reading the JAR",
                    Step::Write => "writing the JAR",
                    Step::Sync => "syncing the JAR",
                };
                failed(what, e)
            }
        })
    }
}

fn failed(what: &str, e: std::io::Error) -> Error {
    Error::BuildFailed(format!("{what}: {e}"))
}

#[async_trait]
impl ImageBuilder for LocalJarBuilder {
    async fn build(
        &self,
        spec: &BuildSpec,
        jar: ByteStream,
        progress: ProgressSink,
    ) -> Result<BuiltImage> {
        let image = Self::image_of(spec)?;
        let dest = self.jar_path(&spec.artifact);
        if tokio::fs::try_exists(&dest).await.unwrap_or(false) {
            progress.emit(format!("{} is already stored", spec.artifact));
            return Ok(BuiltImage {
                image,
                cached: true,
            });
        }
        let dir = dest.parent().unwrap_or(&self.root).to_path_buf();
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| failed("creating the image directory", e))?;
        let tmp = dir.join(format!(".{}.{}.part", spec.artifact, uuid::Uuid::new_v4()));
        progress.emit(format!("storing {} bytes", spec.artifact_size));
        let written = Self::write(&tmp, jar, spec.artifact_size).await;
        let checked = written.and_then(|(actual, size)| {
            if actual != spec.artifact || size != spec.artifact_size {
                return Err(Error::BuildFailed(format!(
                    "the JAR's bytes ({size} bytes, sha256 {actual}) are not the artifact \
                     of the spec ({} bytes, sha256 {})",
                    spec.artifact_size, spec.artifact
                )));
            }
            Ok(())
        });
        if let Err(e) = checked {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
        // The same name in the same directory: readers see the whole JAR or
        // none, and a concurrent build of the same JAR renames the same bytes.
        if let Err(e) = tokio::fs::rename(&tmp, &dest).await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(failed("placing the JAR", e));
        }
        progress.emit(format!("stored as {}", dest.display()));
        Ok(BuiltImage {
            image,
            cached: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use cameleer_runtime::{AppRef, DeploymentId};
    use futures::StreamExt;

    use super::*;

    fn spec(jar: &[u8]) -> BuildSpec {
        BuildSpec {
            app: AppRef::parse("acme", "orders", "dev").unwrap(),
            deployment: DeploymentId::new_random(),
            version: 7,
            artifact: Sha256Digest::of(jar),
            artifact_size: jar.len() as u64,
        }
    }

    fn bytes(chunks: &[&'static [u8]]) -> ByteStream {
        let chunks: Vec<_> = chunks.iter().map(|c| Ok(Bytes::from_static(c))).collect();
        futures::stream::iter(chunks).boxed()
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    #[tokio::test]
    async fn stores_once_then_serves_from_the_cache() {
        let root = tempfile::tempdir().unwrap();
        let builder = LocalJarBuilder::new(root.path());
        let spec = spec(b"PK-jar-bytes");
        let sink = || ProgressSink::discard(spec.deployment);
        let first = builder
            .build(&spec, bytes(&[b"PK-", b"jar-", b"bytes"]), sink())
            .await
            .unwrap();
        assert!(!first.cached);
        assert_eq!(
            first.image.to_string(),
            format!(
                "localhost/cameleer-local/acme/orders:v7@{}",
                spec.artifact.oci()
            )
        );
        let path = builder.jar_path(&spec.artifact);
        assert_eq!(std::fs::read(&path).unwrap(), b"PK-jar-bytes");
        let again = builder.build(&spec, bytes(&[]), sink()).await.unwrap();
        assert!(again.cached);
        assert_eq!(again.image, first.image);
        assert_eq!(
            files(&root.path().join("images")),
            [format!("{}.jar", spec.artifact)]
        );
    }

    #[tokio::test]
    async fn bytes_that_are_not_the_spec_artifact_are_rejected_and_leave_nothing() {
        let root = tempfile::tempdir().unwrap();
        let builder = LocalJarBuilder::new(root.path());
        let spec = spec(b"the real jar");
        for (chunks, why) in [
            (bytes(&[b"the fake jar"]), "same size, other bytes"),
            (bytes(&[b"the real"]), "cut short"),
            (bytes(&[b"the real jar", b" and more"]), "too long"),
        ] {
            let err = builder
                .build(&spec, chunks, ProgressSink::discard(spec.deployment))
                .await
                .unwrap_err();
            assert_eq!(err.code(), "build_failed", "{why}: {err}");
            assert!(!builder.jar_path(&spec.artifact).exists(), "{why}");
            assert!(files(&root.path().join("images")).is_empty(), "{why}");
        }
        let broken = futures::stream::iter([
            Ok(Bytes::from_static(b"the ")),
            Err(std::io::Error::other("connection reset")),
        ])
        .boxed();
        let err = builder
            .build(&spec, broken, ProgressSink::discard(spec.deployment))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("connection reset"), "{err}");
        assert!(files(&root.path().join("images")).is_empty());
    }
}
