//! [`KanikoImageBuilder`]: images built inside the cluster by a Job, for
//! operators who want builds there rather than in the controller (the
//! registry builder, the default).
//!
//! Each build renders the image's Dockerfile
//! ([`DockerfileSpec`]) and the
//! deterministic build context ([`BuildContext`]: Dockerfile, app JAR,
//! agent JAR) and hands it to a Kaniko executor Job in the build namespace
//! as a gzipped tar in a ConfigMap (Kaniko's `--context=tar://…`). The
//! executor pushes to the configured registry with the credentials of a
//! `kubernetes.io/dockerconfigjson` Secret the operator created there, and
//! writes the pushed digest to its termination message
//! (`--digest-file=/dev/termination-log`): the result is pinned to it.
//! Progress is the build pod's log, line by line; a build that does not end
//! within [`KanikoOptions::timeout`] is killed (`activeDeadlineSeconds`)
//! and fails; the Job, its pods and the ConfigMap are deleted afterwards,
//! whatever happened.
//!
//! A ConfigMap holds at most 1 MiB, so this suits small JARs; larger
//! contexts fail with a clear error (`context_too_large`).
//!
//! **Kaniko upstream is archived** (GoogleContainerTools/kaniko, 2025): the
//! executor image is configurable ([`KanikoOptions::executor_image`]);
//! point it at a maintained fork or a mirror you trust.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use cameleer_build::{BuildContext, ContextFile, DockerfileSpec, ImageRef, Sha256Digest};
use cameleer_runtime::{
    BuildSpec, BuiltImage, ByteStream, Error, ImageBuilder, ProgressSink, Result,
};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::ByteString;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, KeyToPath, Pod, PodSpec, PodTemplateSpec,
    ResourceRequirements, SecretVolumeSource, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, LogParams};
use kube::runtime::watcher::{self, Event, watcher};
use tokio::time::Instant;

use crate::api::Kube;
use crate::namespace::{cpu, memory};

/// The largest gzipped context a ConfigMap can carry (1 MiB less room for
/// the object's metadata).
pub const MAX_CONFIGMAP_CONTEXT: usize = 1024 * 1024 - 16 * 1024;

/// The label every build object carries, with the context's digest.
pub const BUILD_LABEL: &str = "cameleer.io/build";

/// How in-cluster builds run.
#[derive(Debug, Clone, PartialEq)]
pub struct KanikoOptions {
    /// Where the Jobs run. Default `cameleer-builds` (see `rbac/kaniko-builds.yaml`).
    pub namespace: String,
    /// The Kaniko executor image. Upstream is archived: pin a maintained
    /// fork or a mirror by digest. Default the last upstream release.
    pub executor_image: String,
    /// The repository prefix images are pushed under:
    /// `{registry}/{tenant}/{app}:v{version}`, e.g. `registry.local:5000/cameleer`.
    pub registry: String,
    /// A `kubernetes.io/dockerconfigjson` Secret in [`namespace`](Self::namespace)
    /// with the credentials to push. `None`: an anonymous push.
    pub push_secret: Option<String>,
    /// Push over plain HTTP / without TLS verification (a local registry on
    /// kind or k3d). Default false.
    pub insecure_registry: bool,
    /// The JRE base image the Dockerfile starts from (pin it by digest).
    pub base_image: ImageRef,
    /// The Cameleer agent JAR.
    pub agent_jar: Vec<u8>,
    /// Options for the agent (`-javaagent:<path>=<args>`).
    pub agent_args: Option<String>,
    /// How long a build may take. Default 10 minutes.
    pub timeout: Duration,
    /// CPU of the build pod, in thousandths of a core. Default 1000.
    pub cpu_millis: u64,
    /// Memory of the build pod, in MiB. Default 2048.
    pub memory_mb: u64,
    /// The server-side apply field manager.
    pub field_manager: String,
}

impl KanikoOptions {
    /// Options with the defaults, pushing to `registry`, on `base_image`,
    /// with the agent `agent_jar`.
    pub fn new(registry: impl Into<String>, base_image: ImageRef, agent_jar: Vec<u8>) -> Self {
        Self {
            namespace: crate::rbac::BUILD_NAMESPACE.into(),
            executor_image: "gcr.io/kaniko-project/executor:v1.23.2".into(),
            registry: registry.into(),
            push_secret: None,
            insecure_registry: false,
            base_image,
            agent_jar,
            agent_args: None,
            timeout: Duration::from_secs(600),
            cpu_millis: 1000,
            memory_mb: 2048,
            field_manager: crate::FIELD_MANAGER.into(),
        }
    }
}

/// The objects of one build.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildObjects {
    /// The gzipped context.
    pub context: ConfigMap,
    /// The executor Job.
    pub job: Job,
    /// Where the image is pushed (without its digest).
    pub destination: ImageRef,
}

/// `build-{first 20 hex of the context digest}`: one Job per context.
pub fn job_name(context: &Sha256Digest) -> String {
    format!("build-{}", context.short(20))
}

/// The destination of `spec`'s image.
pub fn destination(options: &KanikoOptions, spec: &BuildSpec) -> Result<ImageRef> {
    format!(
        "{}/{}/{}:v{}",
        options.registry.trim_end_matches('/'),
        spec.app.tenant,
        spec.app.app,
        spec.version
    )
    .parse()
    .map_err(|e: cameleer_build::ImageRefError| Error::BuildFailed(format!("registry: {e}")))
}

/// The ConfigMap and Job that build `context_tar_gz` (whose tar has digest
/// `context`) into `destination`.
pub fn build_objects(
    options: &KanikoOptions,
    spec: &BuildSpec,
    context: &Sha256Digest,
    context_tar_gz: Vec<u8>,
) -> Result<BuildObjects> {
    if context_tar_gz.len() > MAX_CONFIGMAP_CONTEXT {
        return Err(Error::BuildFailed(format!(
            "context_too_large: the gzipped build context is {} bytes, more than a ConfigMap holds ({MAX_CONFIGMAP_CONTEXT})",
            context_tar_gz.len()
        )));
    }
    let destination = destination(options, spec)?;
    let name = job_name(context);
    let labels = BTreeMap::from([
        (BUILD_LABEL.to_string(), context.short(40)),
        (
            "cameleer.io/tenant".to_string(),
            spec.app.tenant.to_string(),
        ),
        ("cameleer.io/app".to_string(), spec.app.app.to_string()),
        (
            "cameleer.io/deployment".to_string(),
            spec.deployment.to_string(),
        ),
    ]);
    let meta = |name: String| ObjectMeta {
        name: Some(name),
        namespace: Some(options.namespace.clone()),
        labels: Some(labels.clone()),
        ..ObjectMeta::default()
    };
    let config_map = ConfigMap {
        metadata: meta(format!("{name}-context")),
        binary_data: Some(BTreeMap::from([(
            "context.tar.gz".to_string(),
            ByteString(context_tar_gz),
        )])),
        ..ConfigMap::default()
    };
    let mut args = vec![
        "--context=tar:///workspace/context.tar.gz".to_string(),
        "--dockerfile=Dockerfile".to_string(),
        format!("--destination={destination}"),
        "--digest-file=/dev/termination-log".to_string(),
        "--reproducible".to_string(),
        "--verbosity=info".to_string(),
    ];
    if options.insecure_registry {
        args.push("--insecure".into());
        args.push("--skip-tls-verify".into());
    }
    let mut mounts = vec![VolumeMount {
        name: "context".into(),
        mount_path: "/workspace".into(),
        read_only: Some(true),
        ..VolumeMount::default()
    }];
    let mut volumes = vec![Volume {
        name: "context".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: format!("{name}-context"),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }];
    if let Some(secret) = &options.push_secret {
        mounts.push(VolumeMount {
            name: "push-credentials".into(),
            mount_path: "/kaniko/.docker".into(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
        volumes.push(Volume {
            name: "push-credentials".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.clone()),
                items: Some(vec![KeyToPath {
                    key: ".dockerconfigjson".into(),
                    path: "config.json".into(),
                    ..KeyToPath::default()
                }]),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
    }
    let resources = BTreeMap::from([
        ("cpu".to_string(), cpu(options.cpu_millis)),
        ("memory".to_string(), memory(options.memory_mb)),
    ]);
    let job = Job {
        metadata: meta(name.clone()),
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            active_deadline_seconds: Some(
                i64::try_from(options.timeout.as_secs()).unwrap_or(i64::MAX),
            ),
            ttl_seconds_after_finished: Some(600),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels.clone()),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    containers: vec![Container {
                        name: "kaniko".into(),
                        image: Some(options.executor_image.clone()),
                        args: Some(args),
                        volume_mounts: Some(mounts),
                        resources: Some(ResourceRequirements {
                            limits: Some(resources.clone()),
                            requests: Some(resources),
                            ..ResourceRequirements::default()
                        }),
                        termination_message_policy: Some("File".into()),
                        ..Container::default()
                    }],
                    volumes: Some(volumes),
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        status: None,
    };
    Ok(BuildObjects {
        context: config_map,
        job,
        destination,
    })
}

/// Builds images with a Kaniko Job; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct KanikoImageBuilder {
    kube: Kube,
    options: KanikoOptions,
}

impl KanikoImageBuilder {
    /// A builder on `client`.
    pub fn new(client: kube::Client, options: KanikoOptions) -> Self {
        Self {
            kube: Kube {
                client,
                field_manager: options.field_manager.clone(),
            },
            options,
        }
    }

    /// The Dockerfile of every build.
    pub fn dockerfile(&self) -> Result<String> {
        let mut spec = DockerfileSpec::new(self.options.base_image.clone());
        spec.agent_args = self.options.agent_args.clone();
        spec.render().map_err(|e| Error::BuildFailed(e.to_string()))
    }

    /// The gzipped deterministic context of `jar` and its tar's digest.
    pub fn context(&self, jar: &[u8]) -> Result<(Sha256Digest, Vec<u8>)> {
        let ctx = BuildContext {
            dockerfile: self.dockerfile()?,
            agent: ContextFile::new(
                &self.options.agent_jar[..],
                self.options.agent_jar.len() as u64,
            ),
            app: ContextFile::new(jar, jar.len() as u64),
        };
        // mtime 0 and no name in the gzip header: the same context gives
        // the same bytes.
        let mut gz = flate2::GzBuilder::new()
            .mtime(0)
            .write(Vec::new(), flate2::Compression::default());
        let digest = ctx
            .write_to(&mut gz)
            .map_err(|e| Error::BuildFailed(format!("writing the build context: {e}")))?;
        let bytes = gz
            .finish()
            .map_err(|e| Error::BuildFailed(format!("compressing the build context: {e}")))?;
        Ok((digest, bytes))
    }

    async fn cleanup(&self, name: &str) {
        let ns = &self.options.namespace;
        if let Err(e) = self.kube.delete::<Job>(ns, name).await {
            tracing::warn!(job = name, error = %e, "removing a build Job");
        }
        if let Ok(pods) = self
            .kube
            .list::<Pod>(Some(ns), &format!("job-name={name}"))
            .await
        {
            for pod in pods {
                let pod_name = pod.metadata.name.unwrap_or_default();
                let _ = self.kube.delete::<Pod>(ns, &pod_name).await;
            }
        }
        if let Err(e) = self
            .kube
            .delete::<ConfigMap>(ns, &format!("{name}-context"))
            .await
        {
            tracing::warn!(job = name, error = %e, "removing a build context");
        }
    }

    /// Runs the Job to its end: the pushed digest, or why it failed.
    async fn run(&self, objects: &BuildObjects, progress: &ProgressSink) -> Result<Sha256Digest> {
        let ns = self.options.namespace.clone();
        let name = objects.job.metadata.name.clone().unwrap_or_default();
        self.kube.apply::<ConfigMap>(&objects.context).await?;
        self.kube.apply::<Job>(&objects.job).await?;
        progress.emit(format!("build Job {ns}/{name} created"));
        let deadline = Instant::now() + self.options.timeout;
        let pods = Api::<Pod>::namespaced(self.kube.client.clone(), &ns);
        let mut stream = watcher(
            pods.clone(),
            watcher::Config::default().labels(&format!("job-name={name}")),
        )
        .boxed();
        let mut following = false;
        let mut logs: Option<futures::stream::BoxStream<'static, std::io::Result<String>>> = None;
        let mut last_lines: Vec<String> = Vec::new();
        loop {
            let next_event = stream.next();
            let next_line = async {
                match logs.as_mut() {
                    Some(l) => l.next().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {
                    return Err(Error::BuildFailed(format!(
                        "the build did not finish within {:?}", self.options.timeout
                    )));
                }
                line = next_line => match line {
                    Some(Ok(line)) => {
                        progress.emit(line.clone());
                        last_lines.push(line);
                        if last_lines.len() > 20 {
                            last_lines.remove(0);
                        }
                    }
                    _ => logs = None,
                },
                event = next_event => {
                    let pod = match event {
                        Some(Ok(Event::Apply(p) | Event::InitApply(p))) => p,
                        Some(Ok(_)) => continue,
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "watching a build pod; retrying");
                            continue;
                        }
                        None => return Err(Error::BuildFailed("the build pod watch ended".into())),
                    };
                    let pod_name = pod.metadata.name.clone().unwrap_or_default();
                    let status = pod.status.clone().unwrap_or_default();
                    let phase = status.phase.clone().unwrap_or_default();
                    if !following && matches!(phase.as_str(), "Running" | "Succeeded" | "Failed") {
                        following = true;
                        let params = LogParams { follow: true, ..LogParams::default() };
                        if let Ok(reader) = self.kube.log_stream(&ns, &pod_name, &params).await {
                            use futures::AsyncBufReadExt;
                            logs = Some(reader.lines().boxed());
                        }
                    }
                    let terminated = status
                        .container_statuses
                        .iter()
                        .flatten()
                        .find_map(|c| c.state.as_ref()?.terminated.clone());
                    match (phase.as_str(), terminated) {
                        ("Succeeded", Some(t)) => {
                            // Drain what is left of the log.
                            for line in drain(logs.take()).await {
                                progress.emit(line);
                            }
                            let text = t.message.unwrap_or_default();
                            return text
                                .trim()
                                .parse::<Sha256Digest>()
                                .map_err(|e| Error::BuildFailed(format!(
                                    "the executor wrote no image digest ({e}): {text:?}"
                                )));
                        }
                        ("Failed", t) => {
                            last_lines.extend(drain(logs.take()).await);
                            let why = t
                                .and_then(|t| t.message.or(t.reason))
                                .filter(|m| !m.trim().is_empty())
                                .or_else(|| status.message.clone())
                                .unwrap_or_else(|| "the executor failed".into());
                            let tail = last_lines.iter().rev().take(10).rev().cloned().collect::<Vec<_>>().join("\n");
                            return Err(Error::BuildFailed(if tail.is_empty() {
                                why
                            } else {
                                format!("{why}\n{tail}")
                            }));
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}

/// What is left of a followed log once its container ended (which ends the
/// stream), waiting a few seconds at most.
async fn drain(
    logs: Option<futures::stream::BoxStream<'static, std::io::Result<String>>>,
) -> Vec<String> {
    let Some(logs) = logs else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let collect = logs.take(1000).for_each(|l| {
        if let Ok(l) = l {
            out.push(l);
        }
        async {}
    });
    let _ = tokio::time::timeout(Duration::from_secs(5), collect).await;
    out
}

#[async_trait]
impl ImageBuilder for KanikoImageBuilder {
    async fn build(
        &self,
        spec: &BuildSpec,
        jar: ByteStream,
        progress: ProgressSink,
    ) -> Result<BuiltImage> {
        let jar: Vec<u8> = jar
            .try_fold(
                Vec::with_capacity(usize::try_from(spec.artifact_size).unwrap_or(0)),
                |mut acc, b| async move {
                    acc.extend_from_slice(&b);
                    Ok(acc)
                },
            )
            .await
            .map_err(|e| Error::BuildFailed(format!("reading the JAR: {e}")))?;
        let (context, tar_gz) = self.context(&jar)?;
        progress.emit(format!(
            "build context sha256:{context}, {} bytes gzipped",
            tar_gz.len()
        ));
        let objects = build_objects(&self.options, spec, &context, tar_gz)?;
        let name = objects.job.metadata.name.clone().unwrap_or_default();
        let outcome = self.run(&objects, &progress).await;
        self.cleanup(&name).await;
        let digest = outcome?;
        progress.emit(format!("pushed {}@{}", objects.destination, digest.oci()));
        Ok(BuiltImage {
            image: objects.destination.with_digest(digest),
            cached: false,
        })
    }
}
