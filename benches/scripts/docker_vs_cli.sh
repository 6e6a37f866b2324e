#!/usr/bin/env bash
# cameleer-runtime-docker side by side with the docker CLI, in one run
# (release build), printing each ratio:
#   build       DockerImageBuilder: the commit route vs the Dockerfile route,
#               a new version of a ~20 MB JAR;
#   first-line  a new version of a ~20 MB JAR from bytes in hand to its first
#               log line: build + deploy_app + app_logs vs docker build +
#               docker run -d + docker logs -f (target <= 0.7x);
#   logs        1,000,000 lines: app_logs vs docker logs | wc -l
#               (target >= 0.95x its throughput);
#   list        list_apps among 500 containers vs docker ps -a --filter
#               label=... (target <= 1.5x).
# Runs alternate (ours, theirs, theirs, ours, ...) and medians are compared.
# Needs a Docker Engine and a JDK; pulls nothing. Everything a run creates is
# removed at its end, except the content-keyed base images.
#
#   benches/scripts/docker_vs_cli.sh                 # all four
#   benches/scripts/docker_vs_cli.sh first-line logs
#   RUNS=9 benches/scripts/docker_vs_cli.sh logs
set -euo pipefail
cd "$(dirname "$0")/../.."

for tool in docker java javac; do
    command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 2; }
done
docker version --format 'engine {{.Server.Version}}, API {{.Server.APIVersion}}' ||
    { echo "no Docker Engine answers" >&2; exit 2; }
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
exec cargo bench -q -p cameleer-benches --bench docker_vs_cli -- "$@"
