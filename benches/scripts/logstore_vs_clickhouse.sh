#!/usr/bin/env bash
# The log stores side by side with ClickHouse's own client, in one run
# (release build), printing:
#   ingest   lines through the LogForwarder into ClickHouseLogStore
#            (BATCHES=5000,100000: batch sizes; default the core's) vs
#            clickhouse-client inserting the same lines into the same schema
#            (JSONEachRow and TabSeparated), interleaved run by run; medians
#            and the ratios of throughputs (target >= 0.5x the faster client).
#   query    STORED lines (default 10 M) loaded into SQLite and ClickHouse
#            through append; a text search and a one-hour page of one app,
#            each query on both stores in turn, median and p99.
# Starts its own clickhouse-server on loopback (temp dir, free ports).
#
#   benches/scripts/logstore_vs_clickhouse.sh            # both
#   BATCHES=5000,100000 benches/scripts/logstore_vs_clickhouse.sh ingest   # LINES=1000000 RUNS=3
#   STORED=10000000 QUERIES=100 benches/scripts/logstore_vs_clickhouse.sh query
set -euo pipefail
cd "$(dirname "$0")/../.."

for tool in /usr/sbin/clickhouse-server clickhouse-client; do
    command -v "$tool" >/dev/null || { echo "missing tool: $tool (apt-get install clickhouse-server clickhouse-client)" >&2; exit 2; }
done
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
exec cargo bench -q -p cameleer-benches --bench logstore -- "$@"
