//! [`RegistryImageBuilder`]: JAR bytes in, an image pushed to a registry
//! out, pinned to its manifest digest. No container engine involved.
//!
//! Every image has three layers: the JRE base ([`jre::base_layer`]: a
//! `jlink` runtime, the host libraries it links, a minimal root file
//! system; cached on disk by content), the agent, and the application JAR
//! at `/app/app.jar`. The first build of a builder pushes the first two as
//! a base image to `{prefix}/base`; every app repository then gets them by
//! cross-repository mount, so a new version of an app uploads its app
//! layer, its config and its manifest, nothing else. The app layer is
//! written while the JAR streams in (hashed and checked against the spec
//! on the way), to a file, and streamed from there to the registry.
//!
//! Images are `{registry}/{prefix}/{tenant}/{app}`, tagged `v{version}`
//! and `{env}-v{version}`, and carry the labels in [`labels`]. The version
//! is not in the image: the same JAR gives the same digest whatever the
//! version or environment, so a second build of it is a cache hit (the
//! manifest is found and only the tags are put), and promotion runs the
//! same digest.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use cameleer_build::java::jre::{self, JrePlan, JreRecipe};
use cameleer_build::launch::{HeapSizing, JvmLaunch};
use cameleer_build::oci::{
    self, FileMode, ImageConfig, LayerBlob, LayerBuilder, LayerOptions, OciImage, Platform,
};
use cameleer_build::{IMAGE_APP_PATH, ImageRef, Sha256Digest};
use cameleer_runtime::{
    AppRef, BuildSpec, BuiltImage, ByteStream, Error, ImageBuilder, ProgressSink, Result,
};
use futures::TryStreamExt;
use sha2::{Digest as _, Sha256};

use crate::{PushEvent, PushOptions, RegistryClient, RegistryConfig, RegistryError};

/// The repository, under the prefix, that holds the base image (JRE and
/// agent layers) app repositories mount them from.
pub const BASE_REPOSITORY: &str = "base";

/// Bumped whenever the image a build makes changes for the same inputs.
const RECIPE: &str = "cameleer-registry-image-v1";

/// The labels of registry-built images (the same keys the Docker backend
/// uses).
pub mod labels {
    /// `true` on every image we build.
    pub const MANAGED: &str = "io.cameleer.managed";
    /// The tenant.
    pub const TENANT: &str = "io.cameleer.tenant";
    /// The app.
    pub const APP: &str = "io.cameleer.app";
    /// The JAR's SHA-256.
    pub const ARTIFACT_SHA256: &str = "io.cameleer.artifact-sha256";
    /// The agent JAR's SHA-256.
    pub const AGENT_SHA256: &str = "io.cameleer.agent-sha256";
    /// The JRE's content key.
    pub const JRE_KEY: &str = "io.cameleer.jre-key";
    /// The build recipe.
    pub const RECIPE: &str = "io.cameleer.recipe";
}

/// How [`RegistryImageBuilder`] builds and where it pushes.
#[derive(Debug, Clone)]
pub struct RegistryBuilderOptions {
    /// The registry.
    pub registry: RegistryConfig,
    /// Repository prefix: images are `{prefix}/{tenant}/{app}`, the base
    /// `{prefix}/base`. Default `cameleer`.
    pub repository_prefix: String,
    /// The Cameleer agent JAR on this machine.
    pub agent_jar: PathBuf,
    /// Arguments for the agent (`-javaagent:…=<args>`).
    pub agent_args: Option<String>,
    /// Heap as a share of the container's memory limit. Default 75.
    pub max_ram_percentage: f64,
    /// The JRE to link (modules, JDK). Default
    /// [`JreRecipe::default`].
    pub jre: JreRecipe,
    /// The gzip level of app layers, 0 to 9. Part of the image's identity.
    /// Default 0 (gzip framing around stored blocks): a JAR is deflated
    /// already. Measured on a 70 MB fat JAR: level 0 writes the layer in
    /// 0.3 s at 100.0% of the tar, level 2 in 1.8 s at 93%, level 6 in
    /// 2.1 s at 93%; level 1 (zlib-rs' fastest) even grows incompressible
    /// data by 5%. Raise it for registries behind slow links.
    pub app_compression_level: u32,
    /// Where app layers are written while they are pushed; default a
    /// scratch directory in [`cameleer_build::java::cache_dir`].
    pub work_dir: Option<PathBuf>,
    /// The platform the images declare. Default the host's.
    pub platform: Platform,
}

impl RegistryBuilderOptions {
    /// Defaults for everything but the registry and the agent.
    pub fn new(registry: RegistryConfig, agent_jar: impl Into<PathBuf>) -> Self {
        Self {
            registry,
            repository_prefix: "cameleer".into(),
            agent_jar: agent_jar.into(),
            agent_args: None,
            max_ram_percentage: 75.0,
            jre: JreRecipe::default(),
            app_compression_level: 0,
            work_dir: None,
            platform: Platform::host(),
        }
    }
}

/// The base layers, made and pushed once per builder.
#[derive(Debug)]
struct Base {
    jre: LayerBlob,
    agent: LayerBlob,
    agent_sha256: Sha256Digest,
    jre_key: String,
    /// Keeps the agent layer's file.
    _dir: tempfile::TempDir,
}

/// Builds app images without a container engine and pushes them to a
/// registry; see the module docs.
///
/// # Examples
///
/// ```no_run
/// use cameleer_registry::{Credentials, RegistryBuilderOptions, RegistryConfig, RegistryImageBuilder};
/// use cameleer_runtime::{BuildSpec, ImageBuilder, ProgressSink};
///
/// # async fn demo(spec: BuildSpec, jar: cameleer_runtime::ByteStream) -> Result<(), Box<dyn std::error::Error>> {
/// let registry = RegistryConfig::new("https://registry.example.com")?
///     .with_credentials(Credentials::new("ci", "secret")?);
/// let agent = cameleer_build::java::agent::agent_jar()?;
/// let builder = RegistryImageBuilder::new(RegistryBuilderOptions::new(registry, agent))?;
/// let built = builder.build(&spec, jar, ProgressSink::discard(spec.deployment)).await?;
/// // registry.example.com/cameleer/acme/orders:v3@sha256:…
/// println!("{}", built.image);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RegistryImageBuilder {
    client: RegistryClient,
    options: Arc<RegistryBuilderOptions>,
    base: Arc<tokio::sync::Mutex<Option<Arc<Base>>>>,
}

impl RegistryImageBuilder {
    /// A builder pushing to `options.registry`.
    pub fn new(options: RegistryBuilderOptions) -> std::result::Result<Self, RegistryError> {
        crate::push::check_repository(&format!("{}/{BASE_REPOSITORY}", options.repository_prefix))?;
        if options.app_compression_level > 9 {
            return Err(RegistryError::config(
                "app_compression_level",
                "must be from 0 to 9",
            ));
        }
        Ok(Self {
            client: RegistryClient::new(options.registry.clone())?,
            options: Arc::new(options),
            base: Arc::default(),
        })
    }

    /// The registry client.
    pub fn client(&self) -> &RegistryClient {
        &self.client
    }

    /// The options.
    pub fn options(&self) -> &RegistryBuilderOptions {
        &self.options
    }

    /// The entrypoint of every image: the core's launch command
    /// ([`JvmLaunch::entrypoint`]) with the agent's arguments and heap share.
    pub fn entrypoint(&self) -> Vec<String> {
        JvmLaunch {
            agent_args: self.options.agent_args.clone(),
            heap: HeapSizing::RamPercentage(self.options.max_ram_percentage),
            ..JvmLaunch::default()
        }
        .entrypoint()
    }

    /// The repository of `app`'s images: `{prefix}/{tenant}/{app}`.
    pub fn repository(&self, app: &AppRef) -> String {
        format!(
            "{}/{}/{}",
            self.options.repository_prefix, app.tenant, app.app
        )
    }

    /// The repository of the base image: `{prefix}/base`.
    pub fn base_repository(&self) -> String {
        format!("{}/{BASE_REPOSITORY}", self.options.repository_prefix)
    }

    /// Makes the JRE and agent layers (the JRE is linked and compressed
    /// once per machine, then read from the cache) and pushes them as the
    /// base image, once per builder; returns the base image's reference.
    /// Builds call it first; calling it at start-up moves that work out of
    /// the first deployment.
    pub async fn prepare(&self) -> std::result::Result<ImageRef, RegistryError> {
        let base = self.base(None).await?;
        self.base_reference(&base)
    }

    fn base_image(&self, base: &Base) -> std::result::Result<OciImage, RegistryError> {
        let mut config = self.image_config();
        config
            .labels
            .insert(labels::AGENT_SHA256.into(), base.agent_sha256.to_string());
        config
            .labels
            .insert(labels::JRE_KEY.into(), base.jre_key.clone());
        Ok(OciImage::assemble(
            &config,
            vec![base.jre.clone(), base.agent.clone()],
        )?)
    }

    fn base_tag(base: &Base) -> String {
        format!(
            "jre-{}-agent-{}",
            &base.jre_key[..12],
            &base.agent_sha256.to_string()[..12]
        )
    }

    fn base_reference(&self, base: &Base) -> std::result::Result<ImageRef, RegistryError> {
        let image = self.base_image(base)?;
        ImageRef::new(
            Some(self.options.registry.host()),
            &self.base_repository(),
            Some(&Self::base_tag(base)),
            Some(image.manifest.digest),
        )
        .map_err(|e| RegistryError::config("repository", e.to_string()))
    }

    async fn base(
        &self,
        progress: Option<&ProgressSink>,
    ) -> std::result::Result<Arc<Base>, RegistryError> {
        let mut slot = self.base.lock().await;
        if let Some(base) = slot.as_ref() {
            return Ok(base.clone());
        }
        if let Some(p) = progress {
            p.emit("preparing the JRE and agent layers (jlink the first time on this machine)");
        }
        let recipe = self.options.jre.clone();
        let agent_jar = self.options.agent_jar.clone();
        let work_dir = self.options.work_dir.clone();
        let base = blocking(move || -> std::result::Result<Base, RegistryError> {
            let plan = JrePlan::cached(&recipe)?;
            let jre = jre::base_layer(&plan)?;
            let dir = scratch(work_dir.as_deref())?;
            let agent_sha256 = file_sha256(&agent_jar)?;
            let agent = oci::agent_layer(&agent_jar, LayerOptions::default())?
                .write_file(dir.path().join("agent.tar.gz"))?
                .with_created_by(format!("cameleer agent {}", agent_sha256.oci()));
            Ok(Base {
                jre,
                agent,
                agent_sha256,
                jre_key: plan.key().to_string(),
                _dir: dir,
            })
        })
        .await??;
        let image = self.base_image(&base)?;
        let report = self
            .client
            .push_image(
                &self.base_repository(),
                &image,
                &[&Self::base_tag(&base)],
                &PushOptions::default(),
            )
            .await?;
        if let Some(p) = progress {
            p.emit(format!(
                "base image {}:{} is {} ({} bytes uploaded)",
                self.base_repository(),
                Self::base_tag(&base),
                report.manifest_digest.oci(),
                report.bytes_uploaded
            ));
        }
        let base = Arc::new(base);
        *slot = Some(base.clone());
        Ok(base)
    }

    fn image_config(&self) -> ImageConfig {
        let mut config = ImageConfig::new(self.entrypoint());
        // glibc's C.UTF-8 is in the base layer; without LANG the JVM
        // defaults to ASCII for file names and console output.
        config.env.insert("LANG".into(), "C.UTF-8".into());
        config.labels.insert(labels::MANAGED.into(), "true".into());
        config.labels.insert(labels::RECIPE.into(), RECIPE.into());
        config.platform = self.options.platform.clone();
        config
    }

    /// Builds and pushes; errors are the registry's typed ones.
    async fn build_image(
        &self,
        spec: &BuildSpec,
        jar: ByteStream,
        progress: &ProgressSink,
    ) -> std::result::Result<BuildOutcome, BuildError> {
        let base = self.base(Some(progress)).await?;
        let dir = scratch(self.options.work_dir.as_deref())?;
        let app = {
            let reader = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(
                jar.map_err(|e| std::io::Error::new(e.kind(), format!("reading the JAR: {e}"))),
            ));
            let size = spec.artifact_size;
            let level = self.options.app_compression_level;
            let path = dir.path().join("app.tar.gz");
            blocking(
                move || -> std::result::Result<(LayerBlob, Sha256Digest, u64), RegistryError> {
                    let mut hashing = HashingReader::new(reader);
                    let options = LayerOptions {
                        compression_level: level,
                        ..LayerOptions::default()
                    };
                    let mut layer = LayerBuilder::with_options(options);
                    layer.add_reader(IMAGE_APP_PATH, &mut hashing, size, FileMode::Regular)?;
                    let blob = layer.write_file(&path)?;
                    let (digest, read) = hashing.finish();
                    Ok((blob, digest, read))
                },
            )
            .await?
        };
        let (app, jar_digest, jar_size) = app.map_err(|e| match e {
            RegistryError::Oci(oci)
                if oci.code() == "size_mismatch" || oci.code() == "io_error" =>
            {
                BuildError::Jar(format!(
                    "the JAR stream did not give the {} bytes the spec says: {oci}",
                    spec.artifact_size
                ))
            }
            other => BuildError::Registry(other),
        })?;
        if jar_digest != spec.artifact || jar_size != spec.artifact_size {
            return Err(BuildError::Jar(format!(
                "the JAR is {jar_digest} ({jar_size} bytes), the spec says {} ({} bytes)",
                spec.artifact, spec.artifact_size
            )));
        }
        let app = app.with_created_by(format!("cameleer app {}", spec.artifact.oci()));

        let mut config = self.image_config();
        config
            .labels
            .insert(labels::TENANT.into(), spec.app.tenant.to_string());
        config
            .labels
            .insert(labels::APP.into(), spec.app.app.to_string());
        config
            .labels
            .insert(labels::ARTIFACT_SHA256.into(), spec.artifact.to_string());
        config
            .labels
            .insert(labels::AGENT_SHA256.into(), base.agent_sha256.to_string());
        config
            .labels
            .insert(labels::JRE_KEY.into(), base.jre_key.clone());
        let image = OciImage::assemble(&config, vec![base.jre.clone(), base.agent.clone(), app])?;

        let repo = self.repository(&spec.app);
        let tag = format!("v{}", spec.version);
        let env_tag = format!("{}-v{}", spec.app.env, spec.version);
        let tags = [tag.as_str(), env_tag.as_str()];
        let cached = self
            .client
            .manifest_digest(&repo, &image.manifest.digest.oci())
            .await?
            .is_some();
        if cached {
            for t in tags {
                self.client
                    .put_manifest(&repo, t, &image.manifest.bytes)
                    .await?;
            }
            progress.emit(format!(
                "served from the registry: {repo}@{} tagged {tag} and {env_tag}",
                image.manifest.digest.oci()
            ));
        } else {
            let sink = progress.clone();
            let options = PushOptions {
                mount_from: Some(self.base_repository()),
                progress: Some(Arc::new(move |e: &PushEvent| describe(&sink, e))),
            };
            let report = self
                .client
                .push_image(&repo, &image, &tags, &options)
                .await?;
            let (skipped, mounted, uploaded) = report.counts();
            progress.emit(format!(
                "pushed {repo}@{}: {uploaded} blobs uploaded ({} bytes), {mounted} mounted, {skipped} already there",
                report.manifest_digest.oci(),
                report.bytes_uploaded
            ));
        }
        let image = ImageRef::new(
            Some(self.options.registry.host()),
            &repo,
            Some(&tag),
            Some(image.manifest.digest),
        )
        .map_err(|e| RegistryError::config("repository", e.to_string()))?;
        Ok(BuildOutcome { image, cached })
    }
}

struct BuildOutcome {
    image: ImageRef,
    cached: bool,
}

/// A build's failure: the JAR's or the registry's.
#[derive(Debug)]
enum BuildError {
    Jar(String),
    Registry(RegistryError),
}

impl From<RegistryError> for BuildError {
    fn from(e: RegistryError) -> Self {
        BuildError::Registry(e)
    }
}

impl From<cameleer_build::oci::OciError> for BuildError {
    fn from(e: cameleer_build::oci::OciError) -> Self {
        BuildError::Registry(e.into())
    }
}

fn describe(sink: &ProgressSink, event: &PushEvent) {
    match event {
        PushEvent::Skipped { digest } => {
            sink.emit(format!("{} already in the repository", digest.oci()))
        }
        PushEvent::Mounted { digest, from } => {
            sink.emit(format!("mounted {} from {from}", digest.oci()))
        }
        PushEvent::Uploading { digest, size } => {
            sink.emit(format!("uploading {} ({size} bytes)", digest.oci()))
        }
        PushEvent::Uploaded { digest, size } => {
            sink.emit(format!("uploaded {} ({size} bytes)", digest.oci()))
        }
        PushEvent::ManifestPushed { reference, digest } => {
            sink.emit(format!("manifest {} as {reference}", digest.oci()))
        }
        _ => {}
    }
}

#[async_trait]
impl ImageBuilder for RegistryImageBuilder {
    #[tracing::instrument(skip_all, fields(app = %spec.app, version = spec.version, registry = %self.options.registry.host()))]
    async fn build(
        &self,
        spec: &BuildSpec,
        jar: ByteStream,
        progress: ProgressSink,
    ) -> Result<BuiltImage> {
        match self.build_image(spec, jar, &progress).await {
            Ok(BuildOutcome { image, cached }) => Ok(BuiltImage { image, cached }),
            Err(BuildError::Jar(message)) => {
                progress.emit(format!("build failed: {message}"));
                Err(Error::BuildFailed(message))
            }
            Err(BuildError::Registry(e)) => {
                let message = format!("{e} ({})", e.code());
                progress.emit(format!("build failed: {message}"));
                Err(Error::BuildFailed(message))
            }
        }
    }
}

/// A scratch directory in `work_dir` or the cache, removed when dropped.
fn scratch(
    work_dir: Option<&std::path::Path>,
) -> std::result::Result<tempfile::TempDir, RegistryError> {
    match work_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(RegistryError::io(format!("creating {}", dir.display())))?;
            tempfile::Builder::new()
                .prefix("push-")
                .tempdir_in(dir)
                .map_err(RegistryError::io(format!(
                    "creating a scratch directory in {}",
                    dir.display()
                )))
        }
        None => {
            let cache = cameleer_build::java::cache_dir().map_err(|e| {
                RegistryError::config("work_dir", format!("no cache directory: {e}"))
            })?;
            cameleer_build::java::scratch_dir(&cache)
                .map_err(|e| RegistryError::config("work_dir", e.to_string()))
        }
    }
}

fn file_sha256(path: &std::path::Path) -> std::result::Result<Sha256Digest, RegistryError> {
    let mut file = std::fs::File::open(path)
        .map_err(RegistryError::io(format!("opening {}", path.display())))?;
    let mut h = Sha256::new();
    std::io::copy(&mut file, &mut h)
        .map_err(RegistryError::io(format!("reading {}", path.display())))?;
    Ok(h.finalize().into())
}

/// Hashes and counts what is read through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    read: u64,
}

impl<R> HashingReader<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            read: 0,
        }
    }

    fn finish(self) -> (Sha256Digest, u64) {
        (self.hasher.finalize().into(), self.read)
    }
}

impl<R: std::io::Read> std::io::Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

/// Runs blocking work (the JVM's tools, hashing, compression) off the
/// async runtime.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> std::result::Result<T, RegistryError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| RegistryError::Io {
            context: "a blocking task of the build".into(),
            source: std::io::Error::other(e.to_string()),
        })
}
