#!/usr/bin/env bash
# cameleer-build side by side with peer tools, in one run:
#   1. full JAR validation (the `validate` example, release build) vs `unzip -t`
#      on the same ~20 MB, 4,000-entry Spring-Boot-style fat JAR
#      (target: at most 0.5x unzip's wall time), its libraries written as
#      Maven and Gradle write them (sizes in the local headers); then the
#      same JAR with every entry followed by a data descriptor, as `jar`
#      writes them, for the record;
#   2. SHA-256 alone (the `sha256sum` example) vs `openssl dgst -sha256` on a
#      ~400 MB file (target: at least 0.9x openssl's throughput).
# Runs are interleaved (ours, theirs, ours, ...) and the median wall time of
# each is compared, so load from other processes hits both sides alike.
# `validate --sequential` (one core) is timed too, to show what the second
# core buys.
#
#   benches/scripts/validate_vs_peers.sh            # RUNS=31 by default
#   RUNS=51 benches/scripts/validate_vs_peers.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

RUNS=${RUNS:-31}
for tool in unzip openssl python3; do
    command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 2; }
done
# tmpfs when there is one, so disk speed is not measured.
WORK=$(mktemp -d /dev/shm/cameleer-bench.XXXXXX 2>/dev/null || mktemp -d)
trap 'rm -rf "$WORK"' EXIT

cargo build --release -q -p cameleer-build --features testing \
    --example validate --example sha256sum --example make_fat_jar
BIN=target/release/examples
"$BIN/make_fat_jar" "$WORK/fat.jar" >/dev/null
"$BIN/make_fat_jar" --streamed "$WORK/streamed.jar" >/dev/null
for _ in $(seq 20); do cat "$WORK/fat.jar"; done > "$WORK/big.bin"

# Sanity: both sides agree before anything is timed.
for jar in fat streamed; do
    "$BIN/validate" "$WORK/$jar.jar" | grep -q '"valid":true'
    unzip -tqq "$WORK/$jar.jar" >/dev/null
done
ours=$("$BIN/sha256sum" "$WORK/big.bin" | cut -d' ' -f1)
theirs=$(openssl dgst -sha256 -r "$WORK/big.bin" | cut -d' ' -f1)
[ "$ours" = "$theirs" ] || { echo "sha256 differs: $ours vs $theirs" >&2; exit 1; }

# medians CMD...: runs the commands in turn, RUNS rounds; prints each
# command's median wall time in ms, space-separated.
medians() {
    local i c t0 t1
    local -a times=()
    for ((i = 0; i < RUNS; i++)); do
        for ((c = 1; c <= $#; c++)); do
            t0=$(date +%s%N); eval "${!c}" >/dev/null 2>&1; t1=$(date +%s%N)
            times+=("$c:$(( (t1 - t0) / 1000 ))")
        done
    done
    python3 - "$#" "${times[@]}" <<'PY'
import statistics, sys
n = int(sys.argv[1])
by = {c: [] for c in range(1, n + 1)}
for item in sys.argv[2:]:
    c, us = item.split(":")
    by[int(c)].append(int(us))
print(" ".join(f"{statistics.median(by[c]) / 1000:.1f}" for c in range(1, n + 1)))
PY
}

size=$(stat -c %s "$WORK/fat.jar")
entries=$(unzip -Z1 "$WORK/fat.jar" | wc -l)
big=$(stat -c %s "$WORK/big.bin")
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $RUNS interleaved runs, medians"
echo "fat jar: $size bytes, $entries outer entries (4,000 counting the nested ones)"

read -r v q u vs us < <(medians "$BIN/validate $WORK/fat.jar" "$BIN/validate --sequential $WORK/fat.jar" \
    "unzip -tqq $WORK/fat.jar" "$BIN/validate $WORK/streamed.jar" "unzip -tqq $WORK/streamed.jar")
python3 - "$v" "$q" "$u" "$vs" "$us" <<'PY'
import sys
v, q, u, vs, us = map(float, sys.argv[1:])
verdict = "met" if v / u <= 0.5 else "MISSED"
print(f"validate {v:.1f} ms (one core: {q:.1f} ms) vs unzip -t {u:.1f} ms: "
      f"ratio {v / u:.2f} (one core: {q / u:.2f}) (target <= 0.50, {verdict})")
print(f"  every entry with a data descriptor (as jar writes them): validate {vs:.1f} ms "
      f"vs unzip -t {us:.1f} ms: ratio {vs / us:.2f}")
PY

read -r s o < <(medians "$BIN/sha256sum $WORK/big.bin" "openssl dgst -sha256 $WORK/big.bin")
python3 - "$s" "$o" "$big" <<'PY'
import sys
s, o, size = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
mb = size / 1e6
ratio = o / s
verdict = "met" if ratio >= 0.9 else "MISSED"
print(f"sha256 {mb / s * 1000:.0f} MB/s vs openssl {mb / o * 1000:.0f} MB/s on {mb:.0f} MB: "
      f"throughput ratio {ratio:.2f} (target >= 0.90, {verdict})")
PY
