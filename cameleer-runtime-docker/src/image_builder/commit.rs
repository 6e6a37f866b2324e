//! [`BuildRoute::Commit`](super::BuildRoute::Commit): one layer committed
//! onto a cached base+agent image.
//!
//! The base+agent image is made the same way, once per base image, agent
//! and entrypoint: a container of the base image (never started) gets the
//! agent, `/app` and the entrypoint, user and working directory, and is
//! committed and tagged `cameleer/agent-base:<key>`. An app image is a
//! never-started container of that image with `/app/app.jar` uploaded into
//! it, committed with the app's labels. The temporary container is always
//! removed, also when the build fails or its future is dropped.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::{Arc, Mutex};

use bollard::Docker;
use bollard::models::{ContainerConfig, ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CommitContainerOptionsBuilder, CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveImageOptionsBuilder, UploadToContainerOptionsBuilder,
};
use bytes::Bytes;
use cameleer_runtime::{BuildSpec, ByteStream, Error, ProgressSink, Result};
use futures::Stream;
use sha2::{Digest, Sha256};

use super::layer_tar::{header, jar_tar};
use super::{Agent, DockerImageBuilder};
use crate::engine::{backend, is_not_found};
use crate::labels;

/// The repository of the base+agent images.
pub const AGENT_BASE_REPOSITORY: &str = "cameleer/agent-base";

/// Bumped whenever the base+agent image recipe changes, so an image of an
/// older recipe is never reused.
const AGENT_BASE_RECIPE: &str = "cameleer-agent-base-v1";

/// One base+agent image made at a time in this process: the first makes
/// it, the others find the tag.
static AGENT_BASE_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

impl DockerImageBuilder {
    /// The id of the base+agent image for this base image, agent and
    /// entrypoint, made first when the engine has none.
    pub(super) async fn ensure_agent_base(
        &self,
        base_id: &str,
        agent: &Agent,
        entrypoint: &[String],
        progress: &ProgressSink,
    ) -> Result<String> {
        let df = self.dockerfile_spec();
        let user = format!("{}:{}", df.uid, df.gid);
        let mut hasher = Sha256::new();
        for part in [AGENT_BASE_RECIPE, base_id, &agent.sha256.to_string(), &user]
            .into_iter()
            .chain([df.agent_path.as_str(), df.workdir.as_str()])
            .chain(entrypoint.iter().map(String::as_str))
        {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part.as_bytes());
        }
        let key = hex::encode(hasher.finalize());
        let tag = &key[..16];
        let reference = format!("{AGENT_BASE_REPOSITORY}:{tag}");
        if let Some(id) = self.image_id(&reference).await? {
            return Ok(id);
        }
        let _one = AGENT_BASE_LOCK.lock().await;
        if let Some(id) = self.image_id(&reference).await? {
            return Ok(id);
        }
        progress.emit(format!("making the base+agent image {reference}"));
        let image_labels = BTreeMap::from([
            (labels::AGENT_SHA256.to_string(), agent.sha256.to_string()),
            (labels::BASE_IMAGE.to_string(), base_id.to_string()),
        ]);
        let container = BuildContainer::create(&self.docker, base_id, &image_labels).await?;
        let result = async {
            let tar = agent_base_tar(agent, &df.agent_path, &[df.workdir.as_str()]).await?;
            let file = tokio::fs::File::open(tar.path())
                .await
                .map_err(|e| Error::BuildFailed(format!("reading the agent tar: {e}")))?;
            let body = tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024);
            self.upload(&container.id, body).await?;
            let config = ContainerConfig {
                entrypoint: Some(entrypoint.to_vec()),
                cmd: None,
                user: Some(user.clone()),
                working_dir: Some(df.workdir.clone()),
                labels: Some(image_labels.clone().into_iter().collect()),
                ..ContainerConfig::default()
            };
            self.commit(&container.id, config, &format!("cameleer: {reference}"))
                .await
        }
        .await;
        container.remove().await;
        let id = result?;
        // Another process may have tagged one meanwhile; theirs is as good.
        if self.image_id(&reference).await?.is_none() {
            self.tag(&id, AGENT_BASE_REPOSITORY, tag).await?;
        } else if let Err(e) = self
            .docker
            .remove_image(&id, Some(RemoveImageOptionsBuilder::new().build()), None)
            .await
        {
            tracing::warn!(image = %id, error = %e, "could not remove a duplicate base+agent image");
        }
        let id = self.image_id(&reference).await?.ok_or_else(|| {
            Error::BuildFailed(format!("{reference} vanished right after it was tagged"))
        })?;
        progress.emit(format!("made {reference} as {id}"));
        Ok(id)
    }

    /// Makes the image of `spec` on the base+agent image `parent_id`:
    /// create, upload `/app/app.jar`, commit with `image_labels`. Returns
    /// the new image's id (untagged).
    pub(super) async fn commit_app_image(
        &self,
        spec: &BuildSpec,
        jar: ByteStream,
        parent_id: &str,
        entrypoint: &[String],
        image_labels: &BTreeMap<String, String>,
        progress: &ProgressSink,
    ) -> Result<String> {
        let df = self.dockerfile_spec();
        // The container carries the image's labels: a commit merges the
        // container's labels into the image's, so no other may be there.
        let container = BuildContainer::create(&self.docker, parent_id, image_labels).await?;
        progress.emit(format!(
            "uploading {} ({} bytes) into build container {}",
            df.jar_path,
            spec.artifact_size,
            short(&container.id)
        ));
        let result = async {
            let failure: Arc<Mutex<Option<String>>> = Arc::default();
            let tar = jar_tar(
                &df.jar_path,
                jar,
                spec.artifact_size,
                spec.artifact,
                failure.clone(),
            )?;
            let uploaded = self.upload(&container.id, tar).await;
            // Our own reason (a JAR cut short, a digest mismatch) beats the
            // engine's view of a body that stopped.
            if let Some(why) = failure.lock().unwrap_or_else(|p| p.into_inner()).take() {
                return Err(Error::BuildFailed(why));
            }
            uploaded?;
            progress.emit(format!(
                "committing build container {}",
                short(&container.id)
            ));
            let config = ContainerConfig {
                entrypoint: Some(entrypoint.to_vec()),
                cmd: None,
                user: Some(format!("{}:{}", df.uid, df.gid)),
                working_dir: Some(df.workdir.clone()),
                labels: Some(image_labels.clone().into_iter().collect()),
                ..ContainerConfig::default()
            };
            self.commit(&container.id, config, &app_comment(spec)).await
        }
        .await;
        container.remove().await;
        result
    }

    /// Extracts the tar `body` at `/` in the container.
    async fn upload(
        &self,
        container: &str,
        tar: impl Stream<Item = io::Result<Bytes>> + Send + 'static,
    ) -> Result<()> {
        let options = UploadToContainerOptionsBuilder::new().path("/").build();
        self.docker
            .upload_to_container(container, Some(options), bollard::body_try_stream(tar))
            .await
            .map_err(refused("uploading into the build container"))
    }

    /// Commits the container with `config` (merged by the engine with the
    /// container's own: `Env` comes from the base image); returns the id.
    async fn commit(
        &self,
        container: &str,
        config: ContainerConfig,
        comment: &str,
    ) -> Result<String> {
        let options = CommitContainerOptionsBuilder::new()
            .container(container)
            .pause(false)
            .comment(comment)
            .build();
        let committed = self
            .docker
            .commit_container(options, config)
            .await
            .map_err(refused("committing the build container"))?;
        if committed.id.is_empty() {
            return Err(Error::BuildFailed(
                "the engine committed but returned no image id".into(),
            ));
        }
        Ok(committed.id)
    }
}

/// The comment of an app image's layer (its history entry).
pub(super) fn app_comment(spec: &BuildSpec) -> String {
    format!(
        "cameleer: {} v{} (jar sha256 {})",
        spec.app, spec.version, spec.artifact
    )
}

/// An engine error while `doing` a build step: the engine's refusal (its
/// own words) fails the build; anything else is the backend's failure.
pub(super) fn refused(doing: &'static str) -> impl FnOnce(bollard::errors::Error) -> Error {
    move |e| match e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => {
            Error::BuildFailed(format!("{doing}: {message}"))
        }
        e => backend(doing, e),
    }
}

pub(super) fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// A container that exists only to be committed: created (never started,
/// no network), removed by [`remove`](Self::remove), or when dropped
/// without it (a failed or cancelled build) by a task on the runtime.
struct BuildContainer {
    docker: Docker,
    id: String,
    removed: bool,
}

impl BuildContainer {
    async fn create(
        docker: &Docker,
        image_id: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<BuildContainer> {
        let name = format!(
            "cameleer-build-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let body = ContainerCreateBody {
            image: Some(image_id.to_string()),
            labels: Some(labels.clone().into_iter().collect::<HashMap<_, _>>()),
            network_disabled: Some(true),
            host_config: Some(HostConfig {
                network_mode: Some("none".into()),
                ..HostConfig::default()
            }),
            ..ContainerCreateBody::default()
        };
        let created = docker
            .create_container(
                Some(CreateContainerOptionsBuilder::new().name(&name).build()),
                body,
            )
            .await
            .map_err(refused("creating the build container"))?;
        Ok(BuildContainer {
            docker: docker.clone(),
            id: created.id,
            removed: false,
        })
    }

    /// Removes the container; a failure is logged (the image is made or
    /// the build failed either way).
    async fn remove(mut self) {
        self.removed = true;
        remove_container(&self.docker, &self.id).await;
    }
}

impl Drop for BuildContainer {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        let (docker, id) = (self.docker.clone(), std::mem::take(&mut self.id));
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move { remove_container(&docker, &id).await });
            }
            Err(_) => tracing::warn!(container = %id, "no runtime to remove a build container"),
        }
    }
}

async fn remove_container(docker: &Docker, id: &str) {
    let options = RemoveContainerOptionsBuilder::new()
        .force(true)
        .v(true)
        .build();
    match docker.remove_container(id, Some(options)).await {
        Ok(()) => {}
        Err(e) if is_not_found(&e) => {}
        Err(e) => tracing::warn!(container = %id, error = %e, "could not remove a build container"),
    }
}

/// The tar of the base+agent layer, in a temporary file: the parent
/// directories and `dirs` (0755) and the agent at `agent_path` (0644), all
/// owned by root so the app cannot change them.
async fn agent_base_tar(
    agent: &Agent,
    agent_path: &str,
    dirs: &[&str],
) -> Result<tempfile::NamedTempFile> {
    let agent = agent.clone();
    let agent_path = agent_path.to_string();
    let mut all_dirs: Vec<String> = dirs.iter().map(|d| d.to_string()).collect();
    let mut parent = std::path::Path::new(&agent_path).parent();
    while let Some(dir) = parent.filter(|d| d.as_os_str() != "/") {
        all_dirs.push(dir.to_string_lossy().into_owned());
        parent = dir.parent();
    }
    all_dirs.sort();
    all_dirs.dedup();
    tokio::task::spawn_blocking(move || {
        let write = || -> io::Result<tempfile::NamedTempFile> {
            let mut out = tempfile::NamedTempFile::new()?;
            let mut tar = tar::Builder::new(io::BufWriter::new(out.as_file_mut()));
            for dir in &all_dirs {
                let h = header(&format!("{dir}/"), 0, 0o755, tar::EntryType::Directory)?;
                tar.append(&h, io::empty())?;
            }
            let file = std::fs::File::open(&agent.path)?;
            let h = header(&agent_path, agent.size, 0o644, tar::EntryType::Regular)?;
            tar.append(&h, file)?;
            tar.into_inner()?.into_inner().map_err(|e| e.into_error())?;
            Ok(out)
        };
        write().map_err(|e| Error::BuildFailed(format!("packing the agent JAR: {e}")))
    })
    .await
    .map_err(|e| Error::Internal(format!("the task packing the agent JAR failed: {e}")))?
}
