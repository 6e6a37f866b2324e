//! [`BuildRoute::Load`](super::BuildRoute::Load): the app layer made here
//! and handed to the engine's image loader (`docker load`).
//!
//! The engine's loader (moby `image/tarexport/load.go`, engine API 1.41)
//! unpacks the upload into a scratch directory, then, for each layer of
//! the manifest, looks the layer's chain id up in its layer store and opens
//! the layer file only when that layer is missing. So the tarball carries
//! the image config, the manifest and one new layer, `/app/app.jar`: the
//! base+agent layers are named in the manifest but never sent. The engine
//! applies the new layer straight into the storage driver's directory:
//! no container, no mount, no diff. On fuse-overlayfs this is what the
//! commit route pays twice over (the upload through the FUSE mount, then
//! the naive diff that reads the container's and its parent's trees back).
//!
//! The image is a pure function of the base+agent image's config, the JAR
//! and the labels: the config is written here (created at the epoch, keys
//! sorted), so its SHA-256, the image id, is known before the engine
//! answers, and the engine's `Loaded image ID` must be that id. The JAR is
//! checked as it streams (size, SHA-256); a JAR that is not what was
//! announced ends the upload in an error before the manifest, so nothing
//! is loaded.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bollard::query_parameters::ImportImageOptionsBuilder;
use bytes::{Bytes, BytesMut};
use cameleer_build::Sha256Digest;
use cameleer_runtime::{BuildSpec, ByteStream, Error, ProgressSink, Result};
use futures::{Stream, StreamExt};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::DockerImageBuilder;
use super::commit::{app_comment, refused, short};
use super::layer_tar::{BLOCK, header, jar_tar};
use crate::engine::backend;

/// The name of the new layer in the tarball.
const LAYER_FILE: &str = "app/layer.tar";

/// `created` of the image and of its own history entry: the epoch, so the
/// config (and the id) depend on nothing but the inputs.
const EPOCH: &str = "1970-01-01T00:00:00Z";

/// What the new image takes from its parent, read from the engine.
struct Parent {
    /// `rootfs.diff_ids`, base first.
    diff_ids: Vec<String>,
    /// The container config, as the engine's image config spells it.
    config: Map<String, Value>,
    architecture: String,
    os: String,
    variant: Option<String>,
    /// The parent's history, oldest first, or `None` when the engine's
    /// history cannot be lined up with the layers.
    history: Option<Vec<Value>>,
}

/// What the new image adds: its config overrides and its layer's entry.
struct App {
    entrypoint: Vec<String>,
    user: String,
    working_dir: String,
    labels: BTreeMap<String, String>,
    comment: String,
    jar_path: String,
}

impl DockerImageBuilder {
    /// Makes the image of `spec` on the base+agent image `parent_id` with
    /// one `docker load` of a tarball holding only the new layer. Returns
    /// the new image's id (untagged).
    pub(super) async fn load_app_image(
        &self,
        spec: &BuildSpec,
        jar: ByteStream,
        parent_id: &str,
        entrypoint: &[String],
        image_labels: &BTreeMap<String, String>,
        progress: &ProgressSink,
    ) -> Result<String> {
        let df = self.dockerfile_spec();
        let parent = self.parent(parent_id).await?;
        let app = App {
            entrypoint: entrypoint.to_vec(),
            user: format!("{}:{}", df.uid, df.gid),
            working_dir: df.workdir.clone(),
            labels: image_labels.clone(),
            comment: app_comment(spec),
            jar_path: df.jar_path.clone(),
        };
        progress.emit(format!(
            "loading {} ({} bytes) as one new layer on {}",
            df.jar_path,
            spec.artifact_size,
            short(parent_id.trim_start_matches("sha256:"))
        ));
        let failure: Arc<Mutex<Option<String>>> = Arc::default();
        let made: Arc<Mutex<Option<String>>> = Arc::default();
        let layer = jar_tar(
            &df.jar_path,
            jar,
            spec.artifact_size,
            spec.artifact,
            failure.clone(),
        )?;
        let body = tarball(
            parent,
            app,
            layer,
            spec.artifact_size,
            failure.clone(),
            made.clone(),
        )?;
        let options = ImportImageOptionsBuilder::new().quiet(true).build();
        let mut answers = self
            .docker
            .import_image(options, bollard::body_try_stream(body), None);
        let mut loaded = None;
        let mut engine_error = None;
        while let Some(answer) = answers.next().await {
            match answer {
                Ok(info) => {
                    let text = info.stream.unwrap_or_default();
                    if let Some(id) = text.trim().strip_prefix("Loaded image ID: ") {
                        loaded = Some(id.to_string());
                    }
                }
                Err(e) => {
                    engine_error = Some(e);
                    break;
                }
            }
        }
        // Our own reason (a JAR cut short, a digest mismatch) beats the
        // engine's view of a body that stopped.
        if let Some(why) = failure.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(Error::BuildFailed(why));
        }
        if let Some(e) = engine_error {
            return Err(refused("loading the app image")(e));
        }
        let made = made.lock().unwrap_or_else(|p| p.into_inner()).take();
        match (made, loaded) {
            (Some(made), Some(loaded)) if made == loaded => Ok(made),
            (made, loaded) => Err(Error::BuildFailed(format!(
                "the engine loaded {}, not the image made here ({})",
                loaded.as_deref().unwrap_or("nothing"),
                made.as_deref().unwrap_or("none")
            ))),
        }
    }

    /// The parent image's layers, config, platform and history.
    async fn parent(&self, parent_id: &str) -> Result<Parent> {
        let image = self
            .docker
            .inspect_image(parent_id)
            .await
            .map_err(|e| backend(format!("inspecting image {parent_id}"), e))?;
        let diff_ids = image.root_fs.and_then(|r| r.layers).unwrap_or_default();
        if diff_ids.is_empty() {
            return Err(Error::BuildFailed(format!(
                "the engine reports no layers for {parent_id}"
            )));
        }
        let config = image.config.map(config_of).unwrap_or_default();
        let history = self
            .docker
            .image_history(parent_id)
            .await
            .map_err(|e| backend(format!("reading the history of {parent_id}"), e))?;
        Ok(Parent {
            history: history_of(history, diff_ids.len()),
            diff_ids,
            config,
            architecture: image.architecture.unwrap_or_else(|| "amd64".into()),
            os: image.os.unwrap_or_else(|| "linux".into()),
            variant: image.variant.filter(|v| !v.is_empty()),
        })
    }
}

/// The image config's `config` of an inspected image, in the engine's own
/// spelling (ports and volumes as maps).
fn config_of(c: bollard::models::ImageConfig) -> Map<String, Value> {
    let mut m = Map::new();
    let mut put = |key: &str, value: Value| {
        if !value.is_null() {
            m.insert(key.to_string(), value);
        }
    };
    let set = |items: Option<Vec<String>>| {
        items.map(|items| Value::Object(items.into_iter().map(|k| (k, json!({}))).collect()))
    };
    put("User", json!(c.user));
    put("Env", json!(c.env));
    put("Cmd", json!(c.cmd));
    put("Entrypoint", json!(c.entrypoint));
    put("WorkingDir", json!(c.working_dir));
    put("Labels", json!(c.labels));
    put("ExposedPorts", json!(set(c.exposed_ports)));
    put("Volumes", json!(set(c.volumes)));
    put("Healthcheck", json!(c.healthcheck));
    put("OnBuild", json!(c.on_build));
    put("StopSignal", json!(c.stop_signal));
    put("Shell", json!(c.shell));
    m
}

/// The parent's history, oldest first, as image config entries; `None`
/// when its non-empty entries do not match its `layers` (the engine's
/// history API gives sizes, not the `empty_layer` flag).
fn history_of(
    items: Vec<bollard::models::ImageHistoryResponseItem>,
    layers: usize,
) -> Option<Vec<Value>> {
    let entries: Vec<Value> = items
        .into_iter()
        .rev()
        .map(|h| {
            let created = time::OffsetDateTime::from_unix_timestamp(h.created)
                .ok()
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_else(|| EPOCH.to_string());
            let mut e = Map::new();
            e.insert("created".into(), json!(created));
            if !h.created_by.is_empty() {
                e.insert("created_by".into(), json!(h.created_by));
            }
            if !h.comment.is_empty() {
                e.insert("comment".into(), json!(h.comment));
            }
            if h.size == 0 {
                e.insert("empty_layer".into(), json!(true));
            }
            Value::Object(e)
        })
        .collect();
    let non_empty = entries
        .iter()
        .filter(|e| e.get("empty_layer").is_none())
        .count();
    (non_empty == layers).then_some(entries)
}

/// The image config of the new image and its bytes (compact, keys sorted).
fn image_config(parent: &Parent, app: &App, diff_id: &str) -> Result<Vec<u8>> {
    let mut config = parent.config.clone();
    let mut labels: BTreeMap<String, Value> = match config.remove("Labels") {
        Some(Value::Object(l)) => l.into_iter().collect(),
        _ => BTreeMap::new(),
    };
    labels.extend(app.labels.iter().map(|(k, v)| (k.clone(), json!(v))));
    config.remove("Cmd");
    config.insert("Entrypoint".into(), json!(app.entrypoint));
    config.insert("User".into(), json!(app.user));
    config.insert("WorkingDir".into(), json!(app.working_dir));
    config.insert("Labels".into(), json!(labels));
    let mut diff_ids = parent.diff_ids.clone();
    diff_ids.push(diff_id.to_string());
    let mut image = json!({
        "architecture": parent.architecture,
        "os": parent.os,
        "created": EPOCH,
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    if let Some(variant) = &parent.variant {
        image["variant"] = json!(variant);
    }
    if let Some(history) = &parent.history {
        let mut history = history.clone();
        history.push(json!({
            "created": EPOCH,
            "created_by": format!("COPY app.jar {} # cameleer", app.jar_path),
            "comment": app.comment,
        }));
        image["history"] = json!(history);
    }
    // serde_json's maps are sorted by key: the same inputs, the same bytes.
    serde_json::to_vec(&image)
        .map_err(|e| Error::Internal(format!("serialising the image config: {e}")))
}

/// `n` rounded up to whole tar blocks.
fn blocks(n: u64) -> u64 {
    n.div_ceil(BLOCK as u64) * BLOCK as u64
}

/// One regular file of the tarball: header, bytes, padding.
fn entry(out: &mut BytesMut, name: &str, bytes: &[u8]) -> io::Result<()> {
    let h = header(name, bytes.len() as u64, 0o644, tar::EntryType::Regular)?;
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(bytes);
    out.resize(
        out.len() + (blocks(bytes.len() as u64) as usize - bytes.len()),
        0,
    );
    Ok(())
}

/// The `docker load` tarball as a stream: the new layer (a tar of the
/// JAR's parent directories and `layer`, hashed on the way for its
/// diff id), then the image config (named by its SHA-256, which goes into
/// `made`), `manifest.json` and the end of the archive.
fn tarball(
    parent: Parent,
    app: App,
    layer: impl Stream<Item = io::Result<Bytes>> + Send + 'static,
    jar_size: u64,
    failure: Arc<Mutex<Option<String>>>,
    made: Arc<Mutex<Option<String>>>,
) -> Result<impl Stream<Item = io::Result<Bytes>> + Send + 'static> {
    let tar_error = |e: io::Error| Error::BuildFailed(format!("the image tarball: {e}"));
    let mut dirs = Vec::new();
    let mut dir = Path::new(&app.jar_path).parent();
    while let Some(d) = dir.filter(|d| d.as_os_str() != "/") {
        dirs.push(format!("{}/", d.to_string_lossy()));
        dir = d.parent();
    }
    dirs.reverse();
    let layer_size = BLOCK as u64 * (dirs.len() as u64 + 1) + blocks(jar_size) + 2 * BLOCK as u64;
    let mut head = BytesMut::new();
    let outer =
        header(LAYER_FILE, layer_size, 0o644, tar::EntryType::Regular).map_err(tar_error)?;
    head.extend_from_slice(outer.as_bytes());
    let hasher = Arc::new(Mutex::new(Sha256::new()));
    for d in &dirs {
        let h = header(d, 0, 0o755, tar::EntryType::Directory).map_err(tar_error)?;
        head.extend_from_slice(h.as_bytes());
        hasher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .update(h.as_bytes());
    }
    let layer_hasher = hasher.clone();
    let body = layer.inspect(move |chunk| {
        if let Ok(chunk) = chunk {
            layer_hasher
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .update(chunk);
        }
    });
    let tail = futures::stream::once(futures::future::lazy(move |_| {
        if let Some(why) = failure.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Err(io::Error::new(io::ErrorKind::InvalidData, why));
        }
        let digest = std::mem::take(&mut *hasher.lock().unwrap_or_else(|p| p.into_inner()));
        let diff_id = format!("sha256:{}", hex::encode(digest.finalize()));
        let config = image_config(&parent, &app, &diff_id).map_err(io::Error::other)?;
        let id = Sha256Digest::of(&config);
        let config_file = format!("{}.json", hex::encode(id.as_bytes()));
        let mut layers: Vec<String> = (0..parent.diff_ids.len())
            .map(|i| format!("parent-{i}/layer.tar"))
            .collect();
        layers.push(LAYER_FILE.to_string());
        let manifest = json!([{"Config": config_file, "RepoTags": null, "Layers": layers}]);
        let manifest = serde_json::to_vec(&manifest).map_err(io::Error::other)?;
        let mut out = BytesMut::new();
        entry(&mut out, &config_file, &config)?;
        entry(&mut out, "manifest.json", &manifest)?;
        out.resize(out.len() + 2 * BLOCK, 0);
        *made.lock().unwrap_or_else(|p| p.into_inner()) = Some(id.oci());
        Ok(out.freeze())
    }));
    Ok(
        futures::stream::once(futures::future::ready(Ok(head.freeze())))
            .chain(body)
            .chain(tail),
    )
}
