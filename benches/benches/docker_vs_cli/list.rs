//! `list_apps` of one tenant among 500 containers vs `docker ps -a
//! --filter label=io.cameleer.tenant=<t> --format …`.
//!
//! 500 containers, created and never started (busybox), labelled as
//! ours, one app each, across 5 tenants of 100: a created container is
//! STARTING from the list entry alone, so `list_apps` makes one engine
//! call, as `docker ps` does. The CLI prints what `list_apps` returns
//! (app, env, version, deployment, state).

use bollard::models::HostConfig;
use cameleer_runtime::{AppRef, RuntimeOrchestrator, TenantId};
use cameleer_runtime_docker::labels;
use cameleer_runtime_docker::{DockerOrchestratorOptions, DockerRuntimeOrchestrator};
use futures::{StreamExt, TryStreamExt};

use crate::common::{
    BenchError, Ctx, Target, create_app_container, docker_cli, report, runs, timed,
};

const TENANTS: usize = 5;
const APPS_PER_TENANT: usize = 100;

pub async fn run(ctx: &Ctx) -> Result<(), BenchError> {
    let runs = runs(21);
    let tenants: Vec<String> = (0..TENANTS).map(|n| ctx.tenant(n)).collect();
    let apps: Vec<AppRef> = tenants
        .iter()
        .flat_map(|t| {
            (0..APPS_PER_TENANT).map(move |a| AppRef::parse(t, &format!("app{a}"), "dev"))
        })
        .collect::<Result<_, _>>()?;
    let started = std::time::Instant::now();
    futures::stream::iter(apps.iter().map(|app| create(ctx, app)))
        .buffer_unordered(8)
        .try_collect::<Vec<()>>()
        .await?;
    println!(
        "created {} containers in {:.1} s; load {}; {runs} alternating runs",
        apps.len(),
        started.elapsed().as_secs_f64(),
        crate::common::load()
    );

    let orchestrator =
        DockerRuntimeOrchestrator::new(ctx.docker.clone(), DockerOrchestratorOptions::default());
    let tenant = TenantId::new(tenants[0].as_str())?;
    let ours = || async {
        let apps = orchestrator.list_apps(&tenant).await?;
        if apps.len() != APPS_PER_TENANT {
            return Err(format!("list_apps gave {} apps", apps.len()).into());
        }
        Ok::<(), BenchError>(())
    };
    let filter = format!("label={}={}", labels::TENANT, tenants[0]);
    let format = format!(
        "{{{{.ID}}}} {{{{.Label \"{}\"}}}} {{{{.Label \"{}\"}}}} {{{{.Label \"{}\"}}}} {{{{.Label \"{}\"}}}} {{{{.State}}}}",
        labels::APP,
        labels::ENV,
        labels::VERSION,
        labels::DEPLOYMENT
    );
    let theirs = || async {
        let out = docker_cli(&["ps", "-a", "--filter", &filter, "--format", &format]).await?;
        let n = out.lines().count();
        if n != APPS_PER_TENANT {
            return Err(format!("docker ps listed {n} containers").into());
        }
        Ok::<(), BenchError>(())
    };
    ours().await?;
    theirs().await?;
    let (mut our_times, mut their_times) = (vec![], vec![]);
    for round in 0..runs {
        if round % 2 == 0 {
            our_times.push(timed(ours()).await?.0);
            their_times.push(timed(theirs()).await?.0);
        } else {
            their_times.push(timed(theirs()).await?.0);
            our_times.push(timed(ours()).await?.0);
        }
    }
    report(
        "list_apps among 500 containers",
        &our_times,
        &their_times,
        Target::TimeAtMost(1.5),
    );
    Ok(())
}

async fn create(ctx: &Ctx, app: &AppRef) -> Result<(), BenchError> {
    let cmd = vec!["sleep".into(), "3600".into()];
    create_app_container(ctx, app, cmd, HostConfig::default()).await?;
    Ok(())
}
