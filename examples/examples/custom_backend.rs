//! A host with a backend of its own: the [`Platform`] over
//! [`LocalProcessOrchestrator`], which runs each app as a local `java`
//! process with the agent, and [`LocalJarBuilder`].
//!
//! ```text
//! cargo run -p cameleer-examples --example custom_backend [-- path/to/app.jar]
//! ```
//!
//! Needs a JDK 17+ and nothing else (no Docker). Without a JAR it runs the
//! logging fixture app; the demo agent is compiled from `fixtures/java`.
//! It uploads the JAR, deploys it to `dev`, prints the status and a few log
//! lines, promotes the same image to `staging`, and stops both.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cameleer_build::java::agent::agent_jar;
use cameleer_build::java::fixtures::{self, FixtureApp};
use cameleer_examples::local_process::{
    LocalJarBuilder, LocalProcessOptions, LocalProcessOrchestrator,
};
use cameleer_runtime::memory::{MemoryArtifactStore, MemoryDeploymentStore};
use cameleer_runtime::{AppConfig, AppRef, EnvId, LogOptions, Platform};
use futures::StreamExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let jar = match std::env::args_os().nth(1) {
        Some(path) => PathBuf::from(path),
        None => fixtures::app_jar(FixtureApp::Logging)?,
    };
    let root = tempfile::tempdir()?;
    let options = LocalProcessOptions::new(root.path(), agent_jar()?)?;
    let platform = Platform::builder()
        .orchestrator(Arc::new(LocalProcessOrchestrator::new(options)))
        .image_builder(Arc::new(LocalJarBuilder::new(root.path())))
        .deployment_store(Arc::new(MemoryDeploymentStore::new()))
        .artifact_store(Arc::new(MemoryArtifactStore::new()))
        .build();
    platform.start().await?;

    let app = AppRef::parse("acme", "orders", "dev")?;
    let bytes = tokio_util::io::ReaderStream::new(tokio::fs::File::open(&jar).await?).boxed();
    let upload = platform.upload_artifact(&app, bytes, None).await?;
    println!(
        "uploaded {} ({} bytes, main class {})",
        upload.sha256, upload.size, upload.jar.main_class
    );

    let mut config = AppConfig::default();
    config.resources.memory_mb = 256;
    config.env.insert("LOG_INTERVAL_MS".into(), "300".into());
    let building = platform.deploy(&app, upload.sha256, config).await?;
    let dev = platform
        .wait_settled(&building.id, Duration::from_secs(120))
        .await?;
    let image = dev
        .image
        .as_ref()
        .map_or("none".into(), ToString::to_string);
    println!("{app} v{} is {}, image {image}", dev.version, dev.status);

    let follow = LogOptions {
        since: None,
        follow: true,
    };
    let mut logs = platform.logs(&app, follow).await?.take(6);
    while let Ok(Some(line)) = tokio::time::timeout(Duration::from_secs(10), logs.next()).await {
        let line = line?;
        println!("  {} {:?} {}", line.ts.time(), line.stream, line.line);
    }

    // The same image, no rebuild; staging has no config of its own yet, so
    // it gets dev's.
    let staging: EnvId = "staging".parse()?;
    let config = Some(dev.config.clone());
    let promoted = platform.promote(&app, staging, config).await?;
    let promoted = platform
        .wait_settled(&promoted.id, Duration::from_secs(120))
        .await?;
    println!(
        "{} v{} is {}, same image: {}",
        promoted.app,
        promoted.version,
        promoted.status,
        promoted.image == dev.image
    );

    for app in [&dev.app, &promoted.app] {
        platform.stop(app).await?;
        let view = platform.status(app).await?;
        println!("{app} after stop: {:?}", view.status);
    }
    platform.shutdown().await;
    Ok(())
}
