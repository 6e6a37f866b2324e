//! The example server: the platform's HTTP API on embedded defaults.
//!
//! ```sh
//! cargo run -p cameleer-examples --bin server -- [--listen ADDR] [--data-dir DIR] \
//!     [--agent-jar PATH] [--agent-args STR] [--base-image REF]
//! ```
//!
//! Storage is SQLite and content-addressed files under the data dir; images
//! and containers live in the local Docker engine. With no `--base-image`, a
//! JRE image is built locally with `jlink` (once; it is cached by content);
//! with no `--agent-jar`, the demo agent is compiled from its source.

use std::process::ExitCode;
use std::sync::Arc;

use cameleer_build::java::agent::agent_jar;
use cameleer_examples::api;
use cameleer_examples::server::{ServerArgs, USAGE};
use cameleer_examples::storage::{FsArtifactStore, SqliteDeploymentStore};
use cameleer_runtime::{Platform, PlatformOptions};
use cameleer_runtime_docker::base_image::{BaseImageConfig, ensure_base_image};
use cameleer_runtime_docker::{
    DockerImageBuilder, DockerImageBuilderOptions, DockerOrchestratorOptions,
    DockerRuntimeOrchestrator, connect,
};
use tracing_subscriber::EnvFilter;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = match ServerArgs::parse(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
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
    let options = PlatformOptions::default();
    let store = SqliteDeploymentStore::open(&args.data_dir.join("cameleer.sqlite"))?;
    let artifacts = FsArtifactStore::open(
        args.data_dir.join("artifacts"),
        options.validation.limits.max_upload_bytes,
    )
    .await?;

    let docker = connect::connect().await?;
    let base_config = match args.base_image {
        Some(reference) => BaseImageConfig::Reference(reference),
        None => BaseImageConfig::default(),
    };
    tracing::info!("preparing the base image (built with jlink the first time)");
    let base = ensure_base_image(&docker, &base_config).await?;
    let agent_jar = match args.agent_jar {
        Some(path) => path,
        None => agent_jar()?,
    };
    let mut builder_options = DockerImageBuilderOptions::new(base.reference.clone(), agent_jar);
    builder_options.agent_args = args.agent_args;
    let builder = DockerImageBuilder::new(docker.clone(), builder_options);
    let orchestrator = DockerRuntimeOrchestrator::new(docker, DockerOrchestratorOptions::default());

    let platform = Platform::builder()
        .orchestrator(Arc::new(orchestrator))
        .image_builder(Arc::new(builder))
        .deployment_store(Arc::new(store))
        .artifact_store(Arc::new(artifacts))
        .options(options)
        .build();
    let recovered = platform.start().await?;
    tracing::info!(
        adopted = recovered.backend.adopted.len(),
        orphans_removed = recovered.backend.removed_orphans.len(),
        failed = recovered.failed.len(),
        "recovered state"
    );

    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    // The one line on stdout: scripts and tests wait for it.
    println!(
        "cameleer server listening on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, api::router(platform.clone()))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    platform.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
