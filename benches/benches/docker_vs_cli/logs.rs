//! 1,000,000 log lines: `app_logs` (not following, every line consumed and
//! counted) vs `docker logs <id> | wc -l`.
//!
//! The container is one of ours as far as the labels go (so `app_logs`
//! finds it), runs busybox `seq 1 1000000` and exits before anything is
//! timed. Its json-file log holds every line (one file of up to 512 MB),
//! so no line is rotated away. `docker logs -t | wc -l` (with timestamps,
//! as `app_logs` asks the engine for them) is timed too, for the record.

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::{HostConfig, HostConfigLogConfig};
use cameleer_docker_testing as testing;
use cameleer_runtime::{AppRef, LogOptions, RuntimeOrchestrator};
use cameleer_runtime_docker::{DockerOrchestratorOptions, DockerRuntimeOrchestrator};
use futures::StreamExt;

use crate::common::{
    BenchError, Ctx, Target, create_app_container, docker_cli, median, report, runs, timed,
};

const LINES: u64 = 1_000_000;

pub async fn run(ctx: &Ctx) -> Result<(), BenchError> {
    let runs = runs(7);
    let app = AppRef::parse(&ctx.tenant, "chatty", "dev")?;
    let id = chatty_container(ctx, &app).await?;
    let orchestrator =
        DockerRuntimeOrchestrator::new(ctx.docker.clone(), DockerOrchestratorOptions::default());
    println!(
        "load {}; {LINES} lines; {runs} alternating runs",
        crate::common::load()
    );

    let ours = || async {
        let mut lines = orchestrator
            .app_logs(
                &app,
                &LogOptions {
                    since: None,
                    follow: false,
                },
            )
            .await?;
        let (mut n, mut last) = (0u64, String::new());
        while let Some(line) = lines.next().await {
            n += 1;
            last = line?.line;
        }
        if n != LINES || last != LINES.to_string() {
            return Err(format!("app_logs gave {n} lines, the last {last:?}").into());
        }
        Ok(())
    };
    let cli = |timestamps: bool| {
        let script = format!(
            "docker logs {} {id} | wc -l",
            if timestamps { "-t" } else { "" }
        );
        async move {
            let out = tokio::process::Command::new("sh")
                .args(["-c", &script])
                .output()
                .await?;
            let n: u64 = String::from_utf8_lossy(&out.stdout).trim().parse()?;
            if n != LINES {
                return Err(format!("{script} counted {n} lines").into());
            }
            Ok::<(), BenchError>(())
        }
    };
    // One of each untimed, so the log file is in the page cache for all.
    ours().await?;
    cli(false).await?;

    let (mut our_times, mut their_times, mut stamped) = (vec![], vec![], vec![]);
    for round in 0..runs {
        let (o, t) = if round % 2 == 0 {
            let o = timed(ours()).await?.0;
            (o, timed(cli(false)).await?.0)
        } else {
            let t = timed(cli(false)).await?.0;
            (timed(ours()).await?.0, t)
        };
        let s = timed(cli(true)).await?.0;
        println!(
            "round {round}: ours {:.0} ms, docker logs {:.0} ms, docker logs -t {:.0} ms",
            o.as_secs_f64() * 1e3,
            t.as_secs_f64() * 1e3,
            s.as_secs_f64() * 1e3
        );
        our_times.push(o);
        their_times.push(t);
        stamped.push(s);
    }
    let per_sec = |d: Duration| LINES as f64 / d.as_secs_f64();
    println!(
        "throughput: ours {:.0} lines/s, docker logs {:.0} lines/s, docker logs -t {:.0} lines/s",
        per_sec(median(&our_times)),
        per_sec(median(&their_times)),
        per_sec(median(&stamped))
    );
    report(
        "1,000,000 log lines",
        &our_times,
        &their_times,
        Target::ThroughputAtLeast(0.95),
    );
    report(
        "1,000,000 log lines (vs docker logs -t)",
        &our_times,
        &stamped,
        Target::ThroughputAtLeast(0.95),
    );
    Ok(())
}

/// A container labelled as `app`'s that has printed `LINES` lines and exited.
async fn chatty_container(ctx: &Ctx, app: &AppRef) -> Result<String, BenchError> {
    let host_config = HostConfig {
        log_config: Some(HostConfigLogConfig {
            typ: Some("json-file".into()),
            // One file big enough for every line: the daemon's default
            // options (often max-size=10m) would rotate most away.
            config: Some(HashMap::from([
                ("max-size".to_string(), "512m".to_string()),
                ("max-file".to_string(), "1".to_string()),
            ])),
        }),
        ..HostConfig::default()
    };
    let cmd = vec!["seq".into(), "1".into(), LINES.to_string()];
    let id = create_app_container(ctx, app, cmd, host_config).await?;
    docker_cli(&["start", &id]).await?;
    let exit = testing::wait_exit(&ctx.docker, &id, Duration::from_secs(120)).await?;
    if exit.code != 0 {
        return Err(format!("seq exited with {}", exit.code).into());
    }
    Ok(id)
}
