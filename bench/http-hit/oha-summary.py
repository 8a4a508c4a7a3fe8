"""Reads oha's JSON report: prints req/s, p50, p99 and p99.9 in ms, then
anything other than a 200 (statuses and errors), all on one line."""
import json
import sys

d = json.load(open(sys.argv[1]))
p = d["latencyPercentiles"]


def ms(v):
    return "NaN" if v is None else "%.3f" % (v * 1000)


codes = {k: v for k, v in d.get("statusCodeDistribution", {}).items() if k != "200"}
errors = d.get("errorDistribution", {})
bad = ["status %s: %s" % kv for kv in codes.items()] + ["%s: %s" % kv for kv in errors.items()]
print("%.1f" % d["summary"]["requestsPerSec"], ms(p.get("p50")), ms(p.get("p99")),
      ms(p.get("p99.9")), "; ".join(bad))
