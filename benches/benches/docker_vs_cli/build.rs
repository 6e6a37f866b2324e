//! `DockerImageBuilder::build` of a new version of the ~20 MB JAR on both
//! routes: `BuildRoute::Dockerfile` (the engine's classic build API) vs
//! `BuildRoute::Commit` (one layer on the cached base+agent image). Both
//! sides are ours; "theirs" in the report is the Dockerfile route.

use bollard::query_parameters::RemoveImageOptionsBuilder;
use bytes::Bytes;
use cameleer_runtime::{AppRef, BuildSpec, DeploymentId, ImageBuilder, ProgressSink, Sha256Digest};
use cameleer_runtime_docker::{BuildRoute, DockerImageBuilder, DockerImageBuilderOptions};
use futures::StreamExt;

use crate::common::{BenchError, Ctx, Target, report, runs, timed};
use crate::jar::RunnableJar;

pub async fn run(ctx: &Ctx) -> Result<(), BenchError> {
    let runs = runs(5);
    let jars = RunnableJar::compile()?;
    let builder = |route| {
        let mut options = DockerImageBuilderOptions::new(ctx.jre.clone(), &ctx.agent);
        options.route = route;
        DockerImageBuilder::new(ctx.docker.clone(), options)
    };
    let (commit, dockerfile) = (builder(BuildRoute::Commit), builder(BuildRoute::Dockerfile));
    let app = AppRef::parse(&ctx.tenant, "builds", "dev")?;
    println!(
        "load {}; {runs} alternating runs after one warm-up each",
        crate::common::load()
    );
    let (mut commit_times, mut dockerfile_times) = (vec![], vec![]);
    for round in 0..=runs {
        let mut order = [("commit", &commit), ("dockerfile", &dockerfile)];
        if round % 2 == 1 {
            order.reverse();
        }
        for (route, builder) in order {
            let version = (round * 2 + usize::from(route == "dockerfile")) as u64 + 1;
            let jar = Bytes::from(jars.build(3000 + version));
            let spec = BuildSpec {
                app: app.clone(),
                deployment: DeploymentId::new_random(),
                version,
                artifact: Sha256Digest::of(&jar),
                artifact_size: jar.len() as u64,
            };
            let stream = futures::stream::iter([Ok(jar)]).boxed();
            let (took, built) = timed(async {
                Ok(builder
                    .build(&spec, stream, ProgressSink::discard(spec.deployment))
                    .await?)
            })
            .await?;
            println!(
                "round {round}: {route} {:.0} ms{}",
                took.as_secs_f64() * 1e3,
                if round == 0 { " (warm-up)" } else { "" }
            );
            if round > 0 {
                match route {
                    "commit" => commit_times.push(took),
                    _ => dockerfile_times.push(took),
                }
            }
            if let Some(digest) = built.image.digest() {
                let options = RemoveImageOptionsBuilder::new().force(true).build();
                ctx.docker
                    .remove_image(&digest.oci(), Some(options), None)
                    .await?;
            }
        }
    }
    report(
        "build of a new version (commit route vs Dockerfile route)",
        &commit_times,
        &dockerfile_times,
        Target::TimeAtMost(0.7),
    );
    Ok(())
}
