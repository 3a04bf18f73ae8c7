#!/usr/bin/env python3
"""Prints the plain closing line CI reads ("N passed, N failed, N skipped")
from meson's testlog.json, after a per-suite breakdown."""
import collections
import json
import sys

counts = collections.Counter()
suites = collections.defaultdict(collections.Counter)
with open(sys.argv[1]) as f:
    for line in f:
        t = json.loads(line)
        result = t.get("result", "")
        kind = {"OK": "passed", "SKIP": "skipped", "EXPECTEDFAIL": "passed"}.get(result, "failed")
        counts[kind] += 1
        # name is "project:suite / test"
        suite = t.get("name", "?").split(" / ")[0].split(":")[-1]
        suites[suite][kind] += 1
for name in sorted(suites):
    c = suites[name]
    print(f"  suite {name}: {c['passed']} passed, {c['failed']} failed, {c['skipped']} skipped")
print(f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped")
