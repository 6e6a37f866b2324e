//! [`DockerImageBuilder`]: JAR bytes in, an immutable image out.
//!
//! Three routes lead to the same image shape (the JRE base, the agent at
//! `/opt/cameleer/cameleer-agent.jar`, the JAR at `/app/app.jar` owned by
//! root, `WORKDIR /app`, `USER 10001:10001`, the entrypoint of
//! [`DockerfileSpec::command`]), chosen by [`BuildRoute`]:
//!
//! - [`BuildRoute::Load`] (the default): the same one-layer image on the
//!   same base+agent image as the commit route, but the layer is a tar made
//!   here (the JAR checked as it streams) and handed to the engine's image
//!   loader in a tarball that holds only that layer, the image config and
//!   the manifest: the engine skips the layers it has. No container, no
//!   mount, no diff; the image id is the SHA-256 of a config written here.
//!   See `image_builder/load.rs`.
//! - [`BuildRoute::Commit`]: a content-keyed *base+agent*
//!   image is made once (`cameleer/agent-base:<key>`, the key a SHA-256 over
//!   the base image's id, the agent's SHA-256, the entrypoint and this
//!   recipe's version); each app image is then one layer on it: a container
//!   is created (never started) from the base+agent image, a tar holding
//!   `/app/app.jar` is streamed into it, and it is committed with the app's
//!   labels. Three engine calls and one layer, about 0.7 s for a 20 MB JAR.
//! - [`BuildRoute::Dockerfile`]: the engine's classic build API with the
//!   `cameleer-build` Dockerfile and build context. Every instruction is a
//!   step with a container commit of its own, about 9 s per build; kept for
//!   engines or policies that want a `docker build` they can reproduce.
//!
//! All routes stream the JAR from the artifact store: it is never held
//! whole in memory. All look for a finished image before building: each
//! image is labelled `io.cameleer.context=<key>`, a SHA-256 over the route,
//! the parent image's id, the agent, the entrypoint, the JAR's SHA-256 and
//! the labels that go into the image, and an image with that label is
//! reused (and tagged) without creating anything: the same context twice
//! is served from cache.
//!
//! Images hold nothing environment-specific (see the crate docs of
//! `cameleer-runtime`), are tagged `{prefix}/{tenant}/{app}:v{version}`
//! and also `…:{env}-v{version}` (versions are per environment, so the
//! second tag keeps every deployment's image tagged and safe from
//! `docker image prune`), and carry the labels `io.cameleer.managed`,
//! `io.cameleer.tenant`, `io.cameleer.app`, `io.cameleer.version`,
//! `io.cameleer.artifact-sha256` (the JAR's SHA-256) and
//! `io.cameleer.context`. The result is pinned to the engine's image id.

mod classic;
mod commit;
mod layer_tar;
mod load;
mod remove;

pub use commit::AGENT_BASE_REPOSITORY;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

use async_trait::async_trait;
use bollard::Docker;
use bollard::query_parameters::{ListImagesOptionsBuilder, TagImageOptionsBuilder};
use cameleer_build::{DockerfileSpec, ImageRef, Sha256Digest};
use cameleer_runtime::{
    BuildSpec, BuiltImage, ByteStream, Error, ImageBuilder, ProgressSink, Result,
};
use sha2::{Digest, Sha256};

use crate::base_image::{RUNTIME_GID, RUNTIME_UID};
use crate::engine::{backend, is_not_found};
use crate::labels;

/// How [`DockerImageBuilder`] makes an app image (see the module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BuildRoute {
    /// One layer committed onto a cached base+agent image: create a
    /// container, upload the JAR, commit. About 0.7 s.
    Commit,
    /// One layer made here and loaded onto the cached base+agent image with
    /// the engine's image loader: a tarball of the new layer, the config
    /// and the manifest only, no container. The default.
    #[default]
    Load,
    /// The engine's classic build API with the `cameleer-build` Dockerfile:
    /// about 9 s, one container commit per instruction.
    Dockerfile,
}

impl BuildRoute {
    /// The recipe name that goes into the cache key: bump the version when
    /// the image a route makes changes, so no older image is reused.
    fn recipe(self) -> &'static str {
        match self {
            BuildRoute::Commit => "cameleer-app-image-commit-v1",
            BuildRoute::Load => "cameleer-app-image-load-v1",
            BuildRoute::Dockerfile => "cameleer-app-image-dockerfile-v1",
        }
    }
}

/// How [`DockerImageBuilder`] builds images.
#[derive(Debug, Clone, PartialEq)]
pub struct DockerImageBuilderOptions {
    /// The JRE base image (see [`crate::base_image::ensure_base_image`]).
    /// It must be present in the engine: builds never pull.
    pub base_image: ImageRef,
    /// The Cameleer agent JAR on this machine.
    pub agent_jar: PathBuf,
    /// Arguments for the agent (`-javaagent:…=<args>`).
    pub agent_args: Option<String>,
    /// Repository prefix of the tags, e.g. `cameleer` (the default) or
    /// `registry.example.com:5000/cameleer`.
    pub repository_prefix: String,
    /// Heap as a share of the container's memory limit. Default 75.
    pub max_ram_percentage: f64,
    /// How images are made. Default [`BuildRoute::Commit`].
    pub route: BuildRoute,
}

impl DockerImageBuilderOptions {
    /// Options with the defaults for everything but the base image and the
    /// agent.
    pub fn new(base_image: ImageRef, agent_jar: impl Into<PathBuf>) -> Self {
        Self {
            base_image,
            agent_jar: agent_jar.into(),
            agent_args: None,
            repository_prefix: "cameleer".into(),
            max_ram_percentage: 75.0,
            route: BuildRoute::default(),
        }
    }
}

/// Builds app images on one Docker Engine; see the module docs for the two
/// routes and the cache.
///
/// # Examples
///
/// ```no_run
/// use cameleer_runtime::{BuildSpec, ImageBuilder, ProgressSink};
/// use cameleer_runtime_docker::base_image::{self, BaseImageConfig};
/// use cameleer_runtime_docker::{BuildRoute, DockerImageBuilder, DockerImageBuilderOptions};
///
/// # async fn demo(spec: BuildSpec, jar: cameleer_runtime::ByteStream) -> Result<(), Box<dyn std::error::Error>> {
/// let docker = cameleer_runtime_docker::connect::connect().await?;
/// let jre = base_image::ensure_base_image(&docker, &BaseImageConfig::default()).await?;
/// let mut options = DockerImageBuilderOptions::new(jre.reference, "/opt/cameleer/agent.jar");
/// options.route = BuildRoute::Commit; // the default
/// let builder = DockerImageBuilder::new(docker, options);
/// let built = builder.build(&spec, jar, ProgressSink::discard(spec.deployment)).await?;
/// println!("{} (cached: {})", built.image, built.cached);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct DockerImageBuilder {
    docker: Docker,
    options: DockerImageBuilderOptions,
}

/// The agent JAR, as the builds see it.
#[derive(Debug, Clone)]
struct Agent {
    path: PathBuf,
    sha256: Sha256Digest,
    size: u64,
}

impl DockerImageBuilder {
    /// A builder over `docker` (connected with a negotiated API version).
    pub fn new(docker: Docker, options: DockerImageBuilderOptions) -> Self {
        Self { docker, options }
    }

    /// The options.
    pub fn options(&self) -> &DockerImageBuilderOptions {
        &self.options
    }

    fn repository(&self, spec: &BuildSpec) -> String {
        format!(
            "{}/{}/{}",
            self.options.repository_prefix, spec.app.tenant, spec.app.app
        )
    }

    /// The Dockerfile spec of every image: base, agent, user, entrypoint.
    fn dockerfile_spec(&self) -> DockerfileSpec {
        let mut df = DockerfileSpec::new(self.options.base_image.clone());
        df.agent_args = self.options.agent_args.clone();
        df.max_ram_percentage = self.options.max_ram_percentage;
        df.uid = RUNTIME_UID;
        df.gid = RUNTIME_GID;
        df
    }

    /// The entrypoint of every image: exactly [`DockerfileSpec::command`].
    pub fn entrypoint(&self) -> Result<Vec<String>> {
        self.dockerfile_spec()
            .command()
            .map_err(|e| Error::BuildFailed(format!("the image's command line: {e}")))
    }

    /// The labels `spec`'s image gets from this builder (the cache key label
    /// `io.cameleer.context` comes on top).
    pub fn image_labels(&self, spec: &BuildSpec) -> BTreeMap<String, String> {
        BTreeMap::from([
            (labels::MANAGED.to_string(), "true".to_string()),
            (labels::TENANT.to_string(), spec.app.tenant.to_string()),
            (labels::APP.to_string(), spec.app.app.to_string()),
            (labels::VERSION.to_string(), spec.version.to_string()),
            (
                labels::ARTIFACT_SHA256.to_string(),
                spec.artifact.to_string(),
            ),
        ])
    }

    /// The Dockerfile of `spec`'s image on the [`BuildRoute::Dockerfile`]
    /// route (the version label and the cache key are added as build
    /// labels).
    pub fn dockerfile(&self, spec: &BuildSpec) -> Result<String> {
        let mut df = self.dockerfile_spec();
        df.labels = self.image_labels(spec);
        df.labels.remove(labels::VERSION);
        df.render()
            .map_err(|e| Error::BuildFailed(format!("rendering the Dockerfile: {e}")))
    }

    /// The engine's id of `reference`, or `None` when it has no such image.
    async fn image_id(&self, reference: &str) -> Result<Option<String>> {
        match self.docker.inspect_image(reference).await {
            Ok(image) => Ok(image.id),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(backend(format!("inspecting image {reference}"), e)),
        }
    }

    /// The base image's id; its absence is the build's failure, in the
    /// engine's words (builds never pull).
    async fn base_image_id(&self) -> Result<String> {
        let reference = self.options.base_image.to_string();
        match self.docker.inspect_image(&reference).await {
            Ok(image) => image.id.ok_or_else(|| {
                Error::BuildFailed(format!("the engine reports no id for {reference}"))
            }),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404,
                message,
            }) => Err(Error::BuildFailed(format!(
                "base image {reference} is not on the engine (builds never pull): {message}"
            ))),
            Err(e) => Err(backend(format!("inspecting base image {reference}"), e)),
        }
    }

    /// The agent JAR's SHA-256 and size, read off the async runtime.
    async fn agent(&self) -> Result<Agent> {
        let path = self.options.agent_jar.clone();
        tokio::task::spawn_blocking(move || {
            let read = || -> std::io::Result<Agent> {
                let mut file = std::fs::File::open(&path)?;
                let mut hasher = Sha256::new();
                let mut buf = vec![0u8; 64 * 1024];
                let mut size = 0u64;
                loop {
                    let n = file.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                    size += n as u64;
                }
                Ok(Agent {
                    path: path.clone(),
                    sha256: Sha256Digest::from(hasher.finalize()),
                    size,
                })
            };
            read().map_err(|e| {
                Error::BuildFailed(format!("reading the agent JAR {}: {e}", path.display()))
            })
        })
        .await
        .map_err(|e| Error::Internal(format!("the task reading the agent JAR failed: {e}")))?
    }

    /// An image of an earlier build of the same context, by its
    /// `io.cameleer.context` label (the oldest, when a race made two).
    async fn cached_image(&self, key: &str) -> Result<Option<String>> {
        let filters = labels::label_filters(vec![format!("{}={key}", labels::CONTEXT)]);
        let options = ListImagesOptionsBuilder::new().filters(&filters).build();
        let images = self
            .docker
            .list_images(Some(options))
            .await
            .map_err(|e| backend("looking for a cached image", e))?;
        Ok(images
            .into_iter()
            .min_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)))
            .map(|i| i.id))
    }

    /// Tags `id` as `repository:tag`.
    async fn tag(&self, id: &str, repository: &str, tag: &str) -> Result<()> {
        let options = TagImageOptionsBuilder::new()
            .repo(repository)
            .tag(tag)
            .build();
        self.docker
            .tag_image(id, Some(options))
            .await
            .map_err(|e| backend(format!("tagging {repository}:{tag}"), e))
    }

    /// Tags the image of `spec` with both its tags and pins the result to
    /// its id.
    async fn finish(
        &self,
        spec: &BuildSpec,
        id: &str,
        cached: bool,
        progress: &ProgressSink,
    ) -> Result<BuiltImage> {
        let repository = self.repository(spec);
        let tag = format!("v{}", spec.version);
        self.tag(id, &repository, &tag).await?;
        self.tag(
            id,
            &repository,
            &format!("{}-v{}", spec.app.env, spec.version),
        )
        .await?;
        let digest: Sha256Digest = id.parse().map_err(|_| {
            Error::BuildFailed(format!(
                "the engine returned an image id that is not sha256: {id}"
            ))
        })?;
        progress.emit(format!(
            "{} {repository}:{tag} as {id}",
            if cached {
                "served from cache:"
            } else {
                "built"
            }
        ));
        let image = ImageRef::new(None, &repository, Some(&tag), Some(digest))
            .map_err(|e| Error::BuildFailed(format!("image reference: {e}")))?;
        Ok(BuiltImage { image, cached })
    }
}

/// The build cache key: a SHA-256 over everything the image is made of.
fn context_key(
    route: BuildRoute,
    parent_id: &str,
    agent: &Sha256Digest,
    entrypoint: &[String],
    artifact: &Sha256Digest,
    labels: &BTreeMap<String, String>,
) -> String {
    let mut hasher = Sha256::new();
    let mut field = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    field(route.recipe().as_bytes());
    field(parent_id.as_bytes());
    field(agent.to_string().as_bytes());
    for arg in entrypoint {
        field(arg.as_bytes());
    }
    field(artifact.to_string().as_bytes());
    for (k, v) in labels {
        field(k.as_bytes());
        field(v.as_bytes());
    }
    hex::encode(hasher.finalize())
}

#[async_trait]
impl ImageBuilder for DockerImageBuilder {
    #[tracing::instrument(skip_all, fields(app = %spec.app, version = spec.version, route = ?self.options.route))]
    async fn build(
        &self,
        spec: &BuildSpec,
        jar: ByteStream,
        progress: ProgressSink,
    ) -> Result<BuiltImage> {
        let entrypoint = self.entrypoint()?;
        let base_id = self.base_image_id().await?;
        let agent = self.agent().await?;
        let route = self.options.route;
        let parent_id = match route {
            BuildRoute::Commit | BuildRoute::Load => {
                self.ensure_agent_base(&base_id, &agent, &entrypoint, &progress)
                    .await?
            }
            BuildRoute::Dockerfile => base_id,
        };
        let mut image_labels = self.image_labels(spec);
        let key = context_key(
            route,
            &parent_id,
            &agent.sha256,
            &entrypoint,
            &spec.artifact,
            &image_labels,
        );
        if let Some(id) = self.cached_image(&key).await? {
            return self.finish(spec, &id, true, &progress).await;
        }
        image_labels.insert(labels::CONTEXT.to_string(), key);
        let id = match route {
            BuildRoute::Commit => {
                self.commit_app_image(spec, jar, &parent_id, &entrypoint, &image_labels, &progress)
                    .await?
            }
            BuildRoute::Load => {
                self.load_app_image(spec, jar, &parent_id, &entrypoint, &image_labels, &progress)
                    .await?
            }
            BuildRoute::Dockerfile => {
                self.classic_build(spec, jar, &agent, &image_labels, &progress)
                    .await?
            }
        };
        self.finish(spec, &id, false, &progress).await
    }

    /// Removes the image with the digest `image` is pinned to (the engine's
    /// image id): every tag it has is removed, then the image. Never forced:
    /// an image a container still uses (even a stopped one) is left whole,
    /// and the answer is `conflict`. The cached base+agent image it was
    /// committed on stays. See `image_builder/remove.rs`.
    async fn remove_image(&self, image: &ImageRef) -> Result<()> {
        remove::remove_image(&self.docker, image).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_key_changes_with_every_input() {
        type Labels = BTreeMap<String, String>;
        let key = |route, parent: &str, agent: &[u8], argv: &[String], jar: &[u8], l: &Labels| {
            let (agent, jar) = (Sha256Digest::of(agent), Sha256Digest::of(jar));
            context_key(route, parent, &agent, argv, &jar, l)
        };
        let argv = vec!["java".to_string(), "-jar".into(), "/app/app.jar".into()];
        let labels = Labels::from([("a".to_string(), "1".to_string())]);
        let other_labels = Labels::from([("a".to_string(), "2".to_string())]);
        let (commit, p) = (BuildRoute::Commit, "sha256:p");
        let base = key(commit, p, b"agent", &argv, b"jar", &labels);
        assert_eq!(base.len(), 64);
        assert_eq!(base, key(commit, p, b"agent", &argv, b"jar", &labels));
        for variant in [
            key(BuildRoute::Dockerfile, p, b"agent", &argv, b"jar", &labels),
            key(commit, "sha256:q", b"agent", &argv, b"jar", &labels),
            key(commit, p, b"agent2", &argv, b"jar", &labels),
            key(commit, p, b"agent", &argv[1..], b"jar", &labels),
            key(commit, p, b"agent", &argv, b"jar2", &labels),
            key(commit, p, b"agent", &argv, b"jar", &other_labels),
        ] {
            assert_ne!(variant, base);
        }
    }
}
