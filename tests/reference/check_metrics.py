"""Parses an OpenMetrics/Prometheus text exposition (stdin) with the Prometheus project's own
Python parser and prints its samples as JSON: {"name{label=value,...}": value}. A malformed
exposition makes the parser raise, and this script exit non-zero."""
import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families

samples = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        samples[f"{s.name}{{{labels}}}"] = s.value
json.dump(samples, sys.stdout, sort_keys=True)
