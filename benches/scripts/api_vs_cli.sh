#!/usr/bin/env bash
# A new version from bytes to its first log line, through the example
# server's HTTP API on the real engine, side by side with the docker CLI
# doing the same work, in one run; prints each side's median, the ratio
# (target <= 0.35x) and a measured breakdown of where the time goes.
#
#   commit    the server as shipped: images made on the engine by
#             DockerImageBuilder's default route (the load route, the app
#             layer handed to `docker load`; a container commit before
#             5681e72);
#             the CLI: docker build + docker run + docker logs -f;
#   registry  the server with --registry (images built without the engine
#             and pushed to a loopback docker-registry; the engine pulls
#             them by digest); the CLI: docker build + docker push to the
#             same registry + docker run of the pushed digest + docker
#             logs -f (the image is local after the build, so it is not
#             pulled: the CLI's fastest honest way to a pushed image that
#             runs).
#
# The app is a runnable 23 MB, 4,046-entry fat JAR: the benchmark fat JAR
# of validate_vs_peers.sh (800 classes, 40 nested libraries) with the
# logging fixture app as its Main-Class and 4 MiB of new random bytes in
# every version. Ours: PUT the bytes to …/artifacts (validation and storage
# in one pass), POST …/deployments, poll GET …/logs?since= until the line.
# Theirs: write the JAR into a build context on tmpfs, docker build of a
# Dockerfile FROM the same JRE image with the same agent, user, working
# directory and entrypoint (read off our image), docker run -d with the
# same limits and hardening, docker logs -f until the same line. The line
# is `[app] args=[v<N>]`, which names the version. Rounds alternate which
# side goes first; round 0 warms up and is not counted. Between runs, not
# timed, each side settles: theirs removes its previous container and
# image; ours waits until the deployment is RUNNING and the older version's
# container is gone (a deploy waits for the app's previous rollout to end).
#
# The breakdown uses timestamps on one clock: the client's, the
# deployment's history (BUILDING, STARTING), the engine's container
# events (create, start) and the engine's timestamp of the line.
#
# The server reads an optional token from its data dir's `admin-token`
# file (sent as a Bearer token when present). Everything a run creates is
# removed at its end, except the content-keyed base images.
#
#   benches/scripts/api_vs_cli.sh                  # both routes, RUNS=5
#   RUNS=9 benches/scripts/api_vs_cli.sh commit
#   benches/scripts/api_vs_cli.sh registry
set -euo pipefail
cd "$(dirname "$0")/../.."

ROUTES=("$@")
[ ${#ROUTES[@]} -gt 0 ] || ROUTES=(commit registry)
for route in "${ROUTES[@]}"; do
    case "$route" in
        commit | registry) ;;
        *) echo "unknown route $route (commit or registry)" >&2; exit 2 ;;
    esac
done
tools=(docker java javac jar python3)
[[ " ${ROUTES[*]} " == *" registry "* ]] && tools+=(/usr/bin/docker-registry)
for tool in "${tools[@]}"; do
    command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 2; }
done
docker version --format 'engine {{.Server.Version}}, API {{.Server.APIVersion}}' ||
    { echo "no Docker Engine answers" >&2; exit 2; }

cargo build --release -q -p cameleer-examples --bin server
cargo build --release -q -p cameleer-build --features testing --example make_fat_jar
TARGET=${CARGO_TARGET_DIR:-target}
export SERVER="$TARGET/release/server" MAKE_FAT_JAR="$TARGET/release/examples/make_fat_jar"
export RUNS=${RUNS:-5}
exec python3 benches/scripts/api_vs_cli.py "${ROUTES[@]}"
