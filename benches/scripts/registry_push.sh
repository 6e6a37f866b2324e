#!/usr/bin/env bash
# cameleer-registry side by side with docker build + docker push of the
# same content to the same registry (Debian's docker-registry, started on
# loopback by the benchmark), in one run (release build), printing:
#   time     a new version's ~20 MB JAR to a pushed image: RegistryImageBuilder
#            vs docker build + docker push (target <= 0.3x), medians of
#            alternating runs;
#   bytes    what each new version added to the registry's storage (ours:
#            the app layer, its config and manifest only);
#   memory   peak RSS (/usr/bin/time -v) of a process building and pushing a
#            20 MB and a 200 MB JAR (target: flat).
# Needs a Docker Engine, a JDK, docker-registry and /usr/bin/time; pulls
# nothing. The docker side's images are removed at the end; the registry
# lives in a temporary directory.
#
#   benches/scripts/registry_push.sh
#   RUNS=11 benches/scripts/registry_push.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

for tool in docker java javac /usr/bin/docker-registry /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 2; }
done
docker version --format 'engine {{.Server.Version}}, API {{.Server.APIVersion}}' ||
    { echo "no Docker Engine answers" >&2; exit 2; }
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
exec cargo bench -q -p cameleer-benches --bench registry_push -- "$@"
