//! [`FakeImageBuilder`]: builds nothing, checks its input, counts calls.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use sha2::{Digest as _, Sha256};

use crate::{
    BuildSpec, BuiltImage, ByteStream, Error, ImageBuilder, ImageRef, ProgressSink, Result,
    Sha256Digest,
};

/// An in-memory [`ImageBuilder`] for tests.
///
/// It reads the whole JAR stream and checks it against the spec (digest and
/// size), so a platform that feeds it the wrong bytes fails the build. The
/// image is `fake.local/cameleer/{tenant}/{app}:v{version}`, pinned to a
/// digest derived from the artifact's, and cached by artifact: building the
/// same JAR again returns the same image with `cached: true`.
///
/// Clones share one fake.
#[derive(Debug, Clone, Default)]
pub struct FakeImageBuilder {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    builds: u64,
    failures: VecDeque<String>,
    cache: HashMap<Sha256Digest, ImageRef>,
    delay: Duration,
    /// Digests of the images removed, in order.
    removed: Vec<Sha256Digest>,
    /// Digests whose removal answers `conflict` (in use).
    in_use: std::collections::HashSet<Sha256Digest>,
}

impl FakeImageBuilder {
    /// A builder that succeeds at once.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next build fails with [`Error::BuildFailed`] saying `reason`.
    /// Calls queue up: each one fails one build.
    pub fn fail_next(&self, reason: impl Into<String>) {
        self.lock().failures.push_back(reason.into());
    }

    /// Every build takes `delay` (a tokio sleep, so paused time applies).
    pub fn set_delay(&self, delay: Duration) {
        self.lock().delay = delay;
    }

    /// The digests of the images it holds: built and not removed.
    pub fn images(&self) -> std::collections::BTreeSet<Sha256Digest> {
        self.lock()
            .cache
            .values()
            .filter_map(|i| i.digest().copied())
            .collect()
    }

    /// The digests of the images [`remove_image`](ImageBuilder::remove_image)
    /// removed, in order.
    pub fn removed(&self) -> Vec<Sha256Digest> {
        self.lock().removed.clone()
    }

    /// Removing the image with `digest` answers `conflict`, as an engine
    /// does for an image a container uses.
    pub fn mark_in_use(&self, digest: Sha256Digest) {
        self.lock().in_use.insert(digest);
    }

    /// How many times [`build`](ImageBuilder::build) was called.
    pub fn builds(&self) -> u64 {
        self.lock().builds
    }

    /// The image a build of `artifact` returns (or returned).
    pub fn image_for(spec: &BuildSpec) -> ImageRef {
        let digest = Sha256Digest::of(format!("fake image of {}", spec.artifact).as_bytes());
        ImageRef::new(
            Some("fake.local"),
            &format!("cameleer/{}/{}", spec.app.tenant, spec.app.app),
            Some(&format!("v{}", spec.version)),
            Some(digest),
        )
        .expect("ids make valid repository names")
    }
}

#[async_trait]
impl ImageBuilder for FakeImageBuilder {
    async fn build(
        &self,
        spec: &BuildSpec,
        mut jar: ByteStream,
        progress: ProgressSink,
    ) -> Result<BuiltImage> {
        let delay = {
            let mut st = self.lock();
            st.builds += 1;
            st.delay
        };
        progress.emit(format!(
            "fake build of {} for {} v{}",
            spec.artifact, spec.app, spec.version
        ));
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = jar.next().await {
            let chunk = chunk.map_err(|e| Error::BuildFailed(format!("reading the JAR: {e}")))?;
            size += chunk.len() as u64;
            hasher.update(&chunk);
        }
        let digest: Sha256Digest = hasher.finalize().into();
        if digest != spec.artifact || size != spec.artifact_size {
            return Err(Error::BuildFailed(format!(
                "the JAR is {digest} ({size} bytes), the spec says {} ({} bytes)",
                spec.artifact, spec.artifact_size
            )));
        }
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let mut st = self.lock();
        if let Some(reason) = st.failures.pop_front() {
            progress.emit(format!("build failed: {reason}"));
            return Err(Error::BuildFailed(reason));
        }
        if let Some(image) = st.cache.get(&spec.artifact) {
            progress.emit("cached");
            return Ok(BuiltImage {
                image: image.clone(),
                cached: true,
            });
        }
        let image = Self::image_for(spec);
        st.cache.insert(spec.artifact, image.clone());
        progress.emit(format!("built {image}"));
        Ok(BuiltImage {
            image,
            cached: false,
        })
    }

    async fn remove_image(&self, image: &ImageRef) -> Result<()> {
        let digest = *image
            .digest()
            .ok_or_else(|| Error::Conflict(format!("{image} is not pinned to a digest")))?;
        let mut st = self.lock();
        if st.in_use.contains(&digest) {
            return Err(Error::Conflict(format!("{image} is in use by a container")));
        }
        let before = st.cache.len();
        st.cache.retain(|_, i| i.digest() != Some(&digest));
        if st.cache.len() < before {
            st.removed.push(digest);
        }
        Ok(())
    }
}
