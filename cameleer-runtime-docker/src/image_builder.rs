//! [`DockerImageBuilder`]: JAR bytes in, an immutable image out, through the
//! engine's build API.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use async_trait::async_trait;
use bollard::Docker;
use bollard::query_parameters::{BuildImageOptionsBuilder, TagImageOptionsBuilder};
use cameleer_build::{BuildContext, ContextFile, DockerfileSpec, ImageRef, Sha256Digest};
use cameleer_runtime::{
    BuildSpec, BuiltImage, ByteStream, Error, ImageBuilder, ProgressSink, Result,
};
use futures::StreamExt;
use tokio_util::io::{StreamReader, SyncIoBridge};

use crate::base_image::{RUNTIME_GID, RUNTIME_UID};
use crate::engine::{backend, is_not_found};
use crate::labels;

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
        }
    }
}

/// Builds app images with the engine's (classic) build API.
///
/// The context is the deterministic tar of `cameleer-build` (Dockerfile,
/// agent, JAR), streamed to the engine as the JAR streams in from the
/// artifact store: the JAR is never held whole in memory. The Dockerfile
/// copies the agent before the JAR, so the base+agent layers are shared by
/// every app and only the JAR layer is new; the same context twice is
/// served wholly from the engine's cache.
///
/// Images hold nothing environment-specific (see the crate docs of
/// `cameleer-runtime`), are tagged `{prefix}/{tenant}/{app}:v{version}`
/// and also `…:{env}-v{version}` (versions are per environment, so the
/// second tag keeps every deployment's image tagged and safe from
/// `docker image prune`), and carry the labels `io.cameleer.tenant`,
/// `io.cameleer.app`, `io.cameleer.version` and `io.cameleer.artifact-sha256`
/// (the JAR's SHA-256). The result is pinned to the engine's image id.
#[derive(Debug, Clone)]
pub struct DockerImageBuilder {
    docker: Docker,
    options: DockerImageBuilderOptions,
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

    /// The Dockerfile of `spec`'s image.
    pub fn dockerfile(&self, spec: &BuildSpec) -> Result<String> {
        let mut df = DockerfileSpec::new(self.options.base_image.clone());
        df.agent_args = self.options.agent_args.clone();
        df.max_ram_percentage = self.options.max_ram_percentage;
        df.uid = RUNTIME_UID;
        df.gid = RUNTIME_GID;
        df.labels = BTreeMap::from([
            (labels::MANAGED.to_string(), "true".to_string()),
            (labels::TENANT.to_string(), spec.app.tenant.to_string()),
            (labels::APP.to_string(), spec.app.app.to_string()),
            (
                labels::ARTIFACT_SHA256.to_string(),
                spec.artifact.to_string(),
            ),
        ]);
        df.render()
            .map_err(|e| Error::BuildFailed(format!("rendering the Dockerfile: {e}")))
    }

    async fn image_id(&self, reference: &str) -> Result<Option<String>> {
        match self.docker.inspect_image(reference).await {
            Ok(image) => Ok(image.id),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(backend(format!("inspecting image {reference}"), e)),
        }
    }
}

#[async_trait]
impl ImageBuilder for DockerImageBuilder {
    #[tracing::instrument(skip_all, fields(app = %spec.app, version = spec.version))]
    async fn build(
        &self,
        spec: &BuildSpec,
        jar: ByteStream,
        progress: ProgressSink,
    ) -> Result<BuiltImage> {
        let repository = self.repository(spec);
        let tag = format!("{repository}:v{}", spec.version);
        let env_tag = format!("{}-v{}", spec.app.env, spec.version);
        let dockerfile = self.dockerfile(spec)?;
        let before = self.image_id(&format!("{repository}:{env_tag}")).await?;

        let agent = std::fs::File::open(&self.options.agent_jar).map_err(|e| {
            Error::BuildFailed(format!(
                "opening the agent JAR {}: {e}",
                self.options.agent_jar.display()
            ))
        })?;
        let agent_size = agent
            .metadata()
            .map_err(|e| Error::BuildFailed(format!("reading the agent JAR: {e}")))?
            .len();
        // The JAR streams from the artifact store through the tar writer (a
        // blocking task) into the request body; nothing is held whole.
        let jar = SyncIoBridge::new(StreamReader::new(jar));
        let context = BuildContext {
            dockerfile,
            agent: ContextFile::new(agent, agent_size),
            app: ContextFile::new(jar, spec.artifact_size),
        }
        .into_stream();

        let options = BuildImageOptionsBuilder::new()
            .t(&tag)
            .rm(true)
            .forcerm(true)
            .labels(&HashMap::from([(
                labels::VERSION.to_string(),
                spec.version.to_string(),
            )]))
            .build();
        progress.emit(format!("building {tag} from {}", self.options.base_image));
        let mut output = self.docker.build_image(
            options,
            None,
            Some(bollard::body_try_stream(context.stream)),
        );
        let mut image_id = None;
        let mut failure = None;
        let mut tail: Vec<String> = Vec::new();
        while let Some(item) = output.next().await {
            match item {
                Ok(info) => {
                    if let Some(text) = info.stream.as_deref() {
                        for line in text.lines().map(str::trim_end).filter(|l| !l.is_empty()) {
                            progress.emit(line);
                            if tail.len() == 5 {
                                tail.remove(0);
                            }
                            tail.push(line.to_owned());
                        }
                    }
                    if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                        failure = Some(detail);
                    }
                    if let Some(id) = info.aux.and_then(|a| a.id) {
                        image_id = Some(id);
                    }
                }
                // The engine's own words, whether it failed a step or
                // refused the request.
                Err(bollard::errors::Error::DockerStreamError { error })
                | Err(bollard::errors::Error::DockerResponseServerError {
                    message: error, ..
                }) => {
                    failure = Some(error);
                }
                Err(e) => return Err(backend("building the image", e)),
            }
        }
        if let Some(error) = failure {
            let mut reason = error.trim().to_owned();
            if !tail.is_empty() {
                reason.push_str(&format!(" (last build output: {})", tail.join(" | ")));
            }
            return Err(Error::BuildFailed(reason));
        }
        let context_digest = match context.digest.await {
            Ok(d) => d,
            Err(_) => {
                return Err(Error::BuildFailed(
                    "the engine finished before reading the whole build context".into(),
                ));
            }
        };
        let id = match image_id {
            Some(id) => id,
            None => self.image_id(&tag).await?.ok_or_else(|| {
                Error::BuildFailed(format!(
                    "the engine reported success but {tag} does not exist"
                ))
            })?,
        };
        self.docker
            .tag_image(
                &id,
                Some(
                    TagImageOptionsBuilder::new()
                        .repo(&repository)
                        .tag(&env_tag)
                        .build(),
                ),
            )
            .await
            .map_err(|e| backend(format!("tagging {repository}:{env_tag}"), e))?;
        let digest: Sha256Digest = id.parse().map_err(|_| {
            Error::BuildFailed(format!(
                "the engine returned an image id that is not sha256: {id}"
            ))
        })?;
        let cached = before.as_deref() == Some(id.as_str());
        progress.emit(format!(
            "built {tag} as {id} (context sha256 {context_digest}{})",
            if cached { ", from cache" } else { "" }
        ));
        let image = ImageRef::new(
            None,
            &repository,
            Some(&format!("v{}", spec.version)),
            Some(digest),
        )
        .map_err(|e| Error::BuildFailed(format!("image reference: {e}")))?;
        Ok(BuiltImage { image, cached })
    }
}
