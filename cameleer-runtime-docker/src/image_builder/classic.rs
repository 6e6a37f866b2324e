//! [`BuildRoute::Dockerfile`](super::BuildRoute::Dockerfile): the engine's
//! classic build API with the `cameleer-build` Dockerfile.
//!
//! The context is the deterministic tar of `cameleer-build` (Dockerfile,
//! agent, JAR), streamed to the engine as the JAR streams in from the
//! artifact store. The Dockerfile copies the agent before the JAR, so the
//! base+agent layers are shared by every app and only the JAR layer is new.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use bollard::query_parameters::BuildImageOptionsBuilder;
use cameleer_build::{BuildContext, ContextFile};
use cameleer_runtime::{BuildSpec, ByteStream, Error, ProgressSink, Result};
use futures::StreamExt;
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::{Agent, DockerImageBuilder};
use crate::engine::backend;
use crate::labels;

/// How many lines of build output a failure's reason carries.
const TAIL_LINES: usize = 5;

impl DockerImageBuilder {
    /// Builds `spec`'s image with the classic build API; returns its id.
    /// `image_labels` are the labels the image must carry (the Dockerfile
    /// has all but the version and the cache key, which go in as build
    /// labels so that the Dockerfile's own layers are shared by versions).
    pub(super) async fn classic_build(
        &self,
        spec: &BuildSpec,
        jar: ByteStream,
        agent: &Agent,
        image_labels: &BTreeMap<String, String>,
        progress: &ProgressSink,
    ) -> Result<String> {
        let repository = self.repository(spec);
        let tag = format!("{repository}:v{}", spec.version);
        let dockerfile = self.dockerfile(spec)?;
        let agent_file = std::fs::File::open(&agent.path).map_err(|e| {
            Error::BuildFailed(format!(
                "opening the agent JAR {}: {e}",
                agent.path.display()
            ))
        })?;
        // The JAR streams from the artifact store through the tar writer (a
        // blocking task) into the request body; nothing is held whole.
        let jar = SyncIoBridge::new(StreamReader::new(jar));
        let context = BuildContext {
            dockerfile,
            agent: ContextFile::new(agent_file, agent.size),
            app: ContextFile::new(jar, spec.artifact_size),
        }
        .into_stream();
        // The context's own error (a JAR shorter than announced) is the
        // reason of the failure; the engine only sees a body cut short.
        let context_error: Arc<Mutex<Option<String>>> = Arc::default();
        let body = {
            let slot = context_error.clone();
            context.stream.inspect(move |item| {
                if let Err(e) = item {
                    let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
                    slot.get_or_insert_with(|| e.to_string());
                }
            })
        };
        let build_labels: HashMap<String, String> = [labels::VERSION, labels::CONTEXT]
            .into_iter()
            .filter_map(|k| Some((k.to_string(), image_labels.get(k)?.clone())))
            .collect();
        let options = BuildImageOptionsBuilder::new()
            .t(&tag)
            .rm(true)
            .forcerm(true)
            .labels(&build_labels)
            .build();
        progress.emit(format!("building {tag} from {}", self.options.base_image));
        let mut output =
            self.docker
                .build_image(options, None, Some(bollard::body_try_stream(body)));
        let mut image_id = None;
        let mut failure = None;
        let mut transport = None;
        let mut tail: Vec<String> = Vec::new();
        while let Some(item) = output.next().await {
            match item {
                Ok(info) => {
                    if let Some(text) = info.stream.as_deref() {
                        for line in text.lines().map(str::trim_end).filter(|l| !l.is_empty()) {
                            progress.emit(line);
                            if tail.len() == TAIL_LINES {
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
                Err(e) => {
                    transport = Some(e);
                    break;
                }
            }
        }
        // A context that could not be streamed is the first cause of
        // whatever the engine made of the body stopping.
        let ours = context_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(why) = ours {
            return Err(Error::BuildFailed(format!(
                "streaming the build context: {why}"
            )));
        }
        if let Some(e) = transport {
            return Err(backend("building the image", e));
        }
        if let Some(error) = failure {
            let mut reason = error.trim().to_owned();
            if !tail.is_empty() {
                reason.push_str(&format!(" (last build output: {})", tail.join(" | ")));
            }
            return Err(Error::BuildFailed(reason));
        }
        if context.digest.await.is_err() {
            return Err(Error::BuildFailed(
                "the engine finished before reading the whole build context".into(),
            ));
        }
        match image_id {
            Some(id) => Ok(id),
            None => self.image_id(&tag).await?.ok_or_else(|| {
                Error::BuildFailed(format!(
                    "the engine reported success but {tag} does not exist"
                ))
            }),
        }
    }
}
