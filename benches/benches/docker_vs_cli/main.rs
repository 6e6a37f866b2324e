//! `cameleer-runtime-docker` side by side with the docker CLI doing the same
//! work, in one run, printing the ratio (figures in `BENCHMARKS.md`).
//!
//! ```text
//! cargo bench -p cameleer-benches --bench docker_vs_cli -- <which>...
//! ```
//!
//! `<which>` is any of `first-line`, `logs`, `list`, `build` or `all` (the
//! default); `RUNS=n` overrides the number of alternating runs of each.
//!
//! - `first-line`: a new version of a ~20 MB runnable JAR from bytes in hand
//!   to its first log line: `DockerImageBuilder::build` +
//!   `DockerRuntimeOrchestrator::deploy_app` + `app_logs` following, vs
//!   `docker build` + `docker run -d` + `docker logs -f` (target ≤ 0.7×).
//! - `logs`: 1,000,000 lines through `app_logs` vs `docker logs | wc -l`
//!   (target ≥ 0.95× its throughput).
//! - `list`: `list_apps` among 500 containers vs `docker ps -a --filter
//!   label=…` (target ≤ 1.5× its time).
//! - `build`: `DockerImageBuilder::build` of a new version of the 20 MB JAR,
//!   `BuildRoute::Dockerfile` vs `BuildRoute::Commit`.
//!
//! Everything a run creates (containers, networks, images) carries the run's
//! tenant labels or is registered with a cleanup guard, and is removed at
//! the end, also when the run fails or panics; only the content-keyed base
//! images (`cameleer/jre`, `cameleer/busybox`, `cameleer/agent-base`) stay.
//!
//! Under `cargo test --all-targets` (no `--bench` argument) nothing runs.
#![deny(missing_docs)]

mod build;
mod common;
mod first_line;
mod jar;
mod list;
mod logs;

use std::process::ExitCode;

use common::BenchError;

const ALL: [&str; 4] = ["build", "first-line", "logs", "list"];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        println!("docker_vs_cli: skipped (run it with cargo bench)");
        return ExitCode::SUCCESS;
    }
    let mut which: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if which.is_empty() || which.contains(&"all") {
        which = ALL.to_vec();
    }
    if let Some(unknown) = which.iter().find(|w| !ALL.contains(w)) {
        eprintln!("unknown benchmark {unknown:?}; pick from {ALL:?} or all");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("no runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut failed = false;
    for name in which {
        println!("\n== {name}");
        let result: Result<(), BenchError> = runtime.block_on(async {
            let ctx = common::Ctx::new().await?;
            let outcome = match name {
                "build" => build::run(&ctx).await,
                "first-line" => first_line::run(&ctx).await,
                "logs" => logs::run(&ctx).await,
                _ => list::run(&ctx).await,
            };
            let cleaned = ctx.cleanup().await;
            outcome?;
            cleaned
        });
        if let Err(e) = result {
            eprintln!("{name} failed: {e}");
            failed = true;
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
