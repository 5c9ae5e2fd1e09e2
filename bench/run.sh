#!/usr/bin/env bash
# Run every benchmark; each prints one JSON line and exits non-zero on a missed target.
# Needs the bench extra: pip install -e '.[bench]'
set -u
cd "$(dirname "$0")"
status=0
for bench in memory line_encoding sampler measured throughput many_calls aggregate import_time influx_delivery tracemalloc_overhead probes workload_check run_marks pytest_plugin show_many otel_spans; do
  ../.venv/bin/python "$bench.py" || status=1
done
exit $status
