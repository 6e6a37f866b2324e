//! The example server: the platform's HTTP API on embedded defaults.
//!
//! ```sh
//! cargo run -p cameleer-examples --bin server -- [--listen ADDR] [--data-dir DIR] \
//!     [--agent-jar PATH] [--agent-args STR] [--base-image REF] \
//!     [--registry URL [--registry-credentials-file PATH] [--registry-ca PATH]]
//! cargo run -p cameleer-examples --features kubernetes --bin server -- --backend kubernetes \
//!     --registry URL [--registry-credentials-file PATH] [--registry-ca PATH] [--pull-secret NAME]
//! cargo run -p cameleer-examples --features kubernetes --bin server -- --backend kubernetes \
//!     --image-builder kaniko --registry REPO --base-image REF [--push-secret NAME] [--insecure-registry]
//! ```
//!
//! Storage is SQLite and content-addressed files under the data dir;
//! containers run in the local Docker engine. Images are built by the
//! engine: with no `--base-image`, a JRE image is built locally with `jlink`
//! (once; it is cached by content). With `--registry`, images are built
//! without the engine and pushed to the registry (`cameleer-registry`), and
//! the engine pulls them by digest: uploads end as pushed images, promotion
//! deploys the same digest. With no `--agent-jar`, the demo agent is
//! compiled from its source.
//!
//! `--help` lists every flag and its `CAMELEER_*` variable (see
//! [`ServerArgs`]). On SIGTERM or Ctrl-C: no new connections, the log
//! follows and event streams end with a last `shutting_down` line or event,
//! the other requests get `--shutdown-grace-secs`, background work stops,
//! and the process exits 0; the apps keep running for the next start to
//! adopt.

use std::future::IntoFuture;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::middleware::from_fn_with_state;
use cameleer_build::java::agent::agent_jar;
use cameleer_examples::api;
use cameleer_examples::api::shutdown::end_streams_on;
use cameleer_examples::auth::{AdminToken, Auth};
use cameleer_examples::server::{Backend, LogFormat, LogStoreArg, ServerArgs};
use cameleer_examples::storage::{
    FsArtifactStore, SqliteDeploymentStore, SqliteQuotaStore, SqliteTokenStore,
};
use cameleer_logstore::{ClickHouseLogStore, ClickHouseOptions, SqliteLogStore};
use cameleer_registry::{
    Credentials, RegistryBuilderOptions, RegistryConfig, RegistryImageBuilder,
};
use cameleer_runtime::logs::{ForwarderOptions, LogForwarder, LogStore};
use cameleer_runtime::{ImageBuilder, Platform, PlatformOptions, RuntimeOrchestrator};
use cameleer_runtime_docker::base_image::{BaseImageConfig, ensure_base_image};
use cameleer_runtime_docker::{
    DockerImageBuilder, DockerImageBuilderOptions, DockerOrchestratorOptions,
    DockerRuntimeOrchestrator, RegistryLogin, connect,
};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The longest a log line waits in the forwarder before it is stored.
const LOG_FLUSH: std::time::Duration = std::time::Duration::from_millis(50);

#[tokio::main]
async fn main() -> ExitCode {
    // `--help`, `--version` (exit 0) and bad arguments (exit 2) print and
    // exit here, before anything is logged.
    let args = ServerArgs::from_env().unwrap_or_else(|e| e.exit());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => subscriber.init(),
        LogFormat::Json => subscriber.json().init(),
    }
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: ServerArgs) -> Result<(), BoxError> {
    std::fs::create_dir_all(&args.data_dir)?;
    let mut options = PlatformOptions::default();
    options.retention.keep_versions = args.keep_versions;
    let store = SqliteDeploymentStore::open(&args.data_dir.join("cameleer.sqlite"))?;
    let quotas = SqliteQuotaStore::open(&args.data_dir.join("cameleer.sqlite"))?;
    // Before anything slow: a server that cannot check tokens does not start.
    // A named file must exist (a typo must not mint a new admin token); the
    // default one is made at the first start.
    let admin = match &args.admin_token_file {
        Some(file) => AdminToken::read(file),
        None => AdminToken::read_or_create(&args.data_dir.join("admin-token")),
    }
    .map_err(|e| format!("{e} ({})", e.code()))?;
    let auth = Auth::new(
        &admin,
        Arc::new(SqliteTokenStore::open(
            &args.data_dir.join("cameleer.sqlite"),
        )?),
    );
    let artifacts = FsArtifactStore::open(
        args.data_dir.join("artifacts"),
        options.validation.limits.max_upload_bytes,
    )
    .await?;

    let agent_jar = match args.agent_jar.clone() {
        Some(path) => path,
        None => agent_jar()?,
    };
    let (orchestrator, builder): (Arc<dyn RuntimeOrchestrator>, Arc<dyn ImageBuilder>) =
        match args.backend {
            Backend::Docker => docker_backend(&args, agent_jar).await?,
            Backend::Kubernetes => kubernetes_backend(&args, agent_jar).await?,
        };

    let platform = Platform::builder()
        .orchestrator(orchestrator)
        .image_builder(builder)
        .deployment_store(Arc::new(store))
        .artifact_store(Arc::new(artifacts))
        .quota_store(Arc::new(quotas))
        .options(options)
        .build();
    // Before the platform starts: the forwarder sees recovery's events too.
    let logs = open_log_store(&args).await?;
    // A line is readable through the API at most `LOG_FLUSH` after the app
    // wrote it (the core's default, 1 s, suits a store far away): a new
    // version's first lines are what its deployer waits for. Under load
    // batches still fill up while an append is in flight.
    let forwarder_options = ForwarderOptions {
        flush_interval: LOG_FLUSH,
        ..ForwarderOptions::default()
    };
    let forwarder = LogForwarder::start(&platform, logs.clone(), forwarder_options);
    let logs_api = api::logs::LogsApi {
        store: logs,
        forwarder: forwarder.clone(),
    };
    let recovered = platform.start().await?;
    tracing::info!(
        adopted = recovered.backend.adopted.len(),
        orphans_removed = recovered.backend.removed_orphans.len(),
        failed = recovered.failed.len(),
        "recovered state"
    );

    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone())?;
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    // The one line on stdout: scripts and tests wait for it.
    println!(
        "cameleer server listening on http://{}",
        listener.local_addr()?
    );
    let app = api::router(platform.clone(), auth)
        .layer(axum::Extension(logs_api))
        .layer(from_fn_with_state(shutdown.clone(), end_streams_on));
    serve(listener, app, &shutdown, args.shutdown_grace).await?;
    // Background work stops; the apps keep running, and a build or start
    // cut short stays BUILDING or STARTING until the next start records it
    // as interrupted.
    platform.shutdown().await;
    forwarder.shutdown().await;
    tracing::info!("shut down");
    Ok(())
}

/// Serves until `shutdown` is cancelled, then stops accepting connections
/// and gives the requests in flight `grace` to finish (the endless streams
/// end at once, see [`end_streams_on`]); those still running then are cut
/// off when the process exits.
async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    shutdown: &CancellationToken,
    grace: Duration,
) -> Result<(), BoxError> {
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .into_future();
    let deadline = async {
        shutdown.cancelled().await;
        tracing::info!(
            grace_secs = grace.as_secs(),
            "shutting down: waiting for the requests in flight"
        );
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        served = server => served?,
        () = deadline => tracing::warn!(
            grace_secs = grace.as_secs(),
            "requests still in flight after the grace period are cut off"
        ),
    }
    Ok(())
}

/// The `--log-store`: SQLite in the data dir, or ClickHouse.
async fn open_log_store(args: &ServerArgs) -> Result<Arc<dyn LogStore>, BoxError> {
    Ok(match &args.log_store {
        LogStoreArg::Sqlite => Arc::new(SqliteLogStore::open(args.data_dir.join("logs.sqlite"))?),
        LogStoreArg::ClickHouse(url) => {
            let store = ClickHouseLogStore::connect(ClickHouseOptions::from_url(url)?).await?;
            tracing::info!(version = %store.server_version().await?, "logs are kept in ClickHouse");
            Arc::new(store)
        }
    })
}

async fn docker_backend(
    args: &ServerArgs,
    agent_jar: std::path::PathBuf,
) -> Result<(Arc<dyn RuntimeOrchestrator>, Arc<dyn ImageBuilder>), BoxError> {
    let docker = connect::connect().await?;
    let mut orchestrator_options = DockerOrchestratorOptions::default();
    let builder: Arc<dyn ImageBuilder> = match &args.registry {
        Some(url) => {
            let (builder, credentials) = registry_builder(args, url, agent_jar).await?;
            if let Some(c) = credentials {
                // The engine pulls with the same login.
                orchestrator_options.registry_logins.push(RegistryLogin {
                    registry: builder.client().config().host().to_string(),
                    username: c.username().to_string(),
                    password: c.password().to_string(),
                });
            }
            Arc::new(builder)
        }
        None => {
            let base_config = match args.base_image.clone() {
                Some(reference) => BaseImageConfig::Reference(reference),
                None => BaseImageConfig::default(),
            };
            tracing::info!("preparing the base image (built with jlink the first time)");
            let base = ensure_base_image(&docker, &base_config).await?;
            let mut builder_options =
                DockerImageBuilderOptions::new(base.reference.clone(), agent_jar);
            builder_options.agent_args = args.agent_args.clone();
            Arc::new(DockerImageBuilder::new(docker.clone(), builder_options))
        }
    };
    let orchestrator = DockerRuntimeOrchestrator::new(docker, orchestrator_options);
    Ok((Arc::new(orchestrator), builder))
}

/// The daemonless builder pushing to `url` (both backends), checked and
/// with its base layers pushed before the first upload; and the
/// credentials it pushes with, for whoever pulls.
async fn registry_builder(
    args: &ServerArgs,
    url: &str,
    agent_jar: std::path::PathBuf,
) -> Result<(RegistryImageBuilder, Option<Credentials>), BoxError> {
    let mut config = RegistryConfig::new(url)?;
    if let Some(ca) = &args.registry_ca {
        config = config.with_ca_file(ca)?;
    }
    let credentials = match &args.registry_credentials_file {
        Some(file) => Some(Credentials::from_file(file)?),
        None => Credentials::from_env()?,
    };
    if let Some(c) = &credentials {
        config = config.with_credentials(c.clone());
    }
    let mut options = RegistryBuilderOptions::new(config, agent_jar);
    options.agent_args = args.agent_args.clone();
    let builder = RegistryImageBuilder::new(options)?;
    // Fail fast on a wrong password or an untrusted certificate, and push
    // the JRE and agent layers once, before the first upload.
    builder.client().check().await?;
    tracing::info!(registry = %url, "preparing the base layers (jlink the first time)");
    let base = builder.prepare().await?;
    tracing::info!(%base, "images are pushed to the registry");
    Ok((builder, credentials))
}

/// The Kubernetes backend: the cluster of the kubeconfig (or the
/// in-cluster config); images pushed to `--registry` by the daemonless
/// builder, or with `--image-builder kaniko` built by a Job in the cluster.
#[cfg(feature = "kubernetes")]
async fn kubernetes_backend(
    args: &ServerArgs,
    agent_jar: std::path::PathBuf,
) -> Result<(Arc<dyn RuntimeOrchestrator>, Arc<dyn ImageBuilder>), BoxError> {
    use cameleer_examples::server::ImageBuilderKind;
    use cameleer_runtime_k8s::{
        KanikoImageBuilder, KanikoOptions, KubernetesOptions, KubernetesRuntimeOrchestrator,
    };
    let options = KubernetesOptions {
        image_pull_secrets: args.pull_secrets.clone(),
        ..KubernetesOptions::default()
    };
    let orchestrator = KubernetesRuntimeOrchestrator::connect(options).await?;
    let Some(registry) = args.registry.clone() else {
        return Err("--backend kubernetes needs --registry".into());
    };
    let builder: Arc<dyn ImageBuilder> = match args.image_builder {
        ImageBuilderKind::Registry => {
            // The cluster pulls with --pull-secret; the credentials here
            // are only for pushing.
            let (builder, _) = registry_builder(args, &registry, agent_jar).await?;
            Arc::new(builder)
        }
        ImageBuilderKind::Kaniko => {
            let Some(base) = args.base_image.clone() else {
                return Err("--image-builder kaniko needs --base-image".into());
            };
            let mut options = KanikoOptions::new(registry, base, std::fs::read(&agent_jar)?);
            options.agent_args = args.agent_args.clone();
            options.push_secret = args.push_secret.clone();
            options.insecure_registry = args.insecure_registry;
            tracing::info!("images are built in the cluster by Kaniko Jobs");
            Arc::new(KanikoImageBuilder::new(
                orchestrator.client().clone(),
                options,
            ))
        }
    };
    tracing::info!("running apps on Kubernetes");
    Ok((Arc::new(orchestrator), builder))
}

#[cfg(not(feature = "kubernetes"))]
async fn kubernetes_backend(
    _args: &ServerArgs,
    _agent_jar: std::path::PathBuf,
) -> Result<(Arc<dyn RuntimeOrchestrator>, Arc<dyn ImageBuilder>), BoxError> {
    Err("this server was built without the `kubernetes` feature: cargo run -p cameleer-examples --features kubernetes --bin server -- --backend kubernetes …".into())
}

/// Cancels `shutdown` on the first SIGTERM or SIGINT (Ctrl-C). The
/// handlers are in place when it returns, so a signal sent after the
/// server says it listens always shuts it down gracefully.
fn cancel_on_signal(shutdown: CancellationToken) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = interrupt.recv() => {},
        }
        shutdown.cancel();
    });
    Ok(())
}
