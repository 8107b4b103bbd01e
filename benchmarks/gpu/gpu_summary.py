"""One line of `summary.txt` per step of `benchmarks/gpu/run_gpu.sh`: ran or
not, exit status, seconds against the step's limit, timed out or not, and
what it found, read from the step's JUnit XML (pytest steps) or JSON
results (benchmark steps).

    python benchmarks/gpu/gpu_summary.py NAME EXIT SECONDS LIMIT
        [--junit FILE | --benchmark FILE]
"""

import argparse
import glob
import json
import os
import sys
import xml.etree.ElementTree as ElementTree

# `timeout` exits 124 when it stopped the command (SIGINT), 137 when the
# command outlived the kill-after grace too (SIGKILL).
TIMED_OUT = (124, 137)
COUNTS = ("tests", "failures", "errors", "skipped")


def junit_counts(path):
    """`{passed, failed, errors, skipped}` summed over the file's test
    suites, or None when there is no readable report."""
    try:
        root = ElementTree.parse(path).getroot()
    except (OSError, ElementTree.ParseError):
        return None
    total = dict.fromkeys(COUNTS, 0)
    for suite in root.iter("testsuite"):  # the root itself, or its children
        for key in COUNTS:
            total[key] += int(suite.get(key, 0))
    return {
        "passed": total["tests"] - total["failures"] - total["errors"]
        - total["skipped"],
        "failed": total["failures"],
        "errors": total["errors"],
        "skipped": total["skipped"],
    }


def tests_found(path):
    counts = junit_counts(path)
    if counts is None:
        return "no JUnit report"
    return ", ".join(f"{value} {key}" for key, value in counts.items())


def benchmark_found(path):
    """Cases passed (measured and checked), failed, not checked, out of
    memory, errored and not reached; the targets' verdicts."""
    try:
        with open(path) as file:
            result = json.load(file)
    except (OSError, ValueError):
        return "no results"
    records = result["records"]
    spec = result["arguments"]
    planned = (len(spec["shapes"]) * len(spec["policies"])
               * len(spec["implementations"]))
    verdicts = [r.get("verdict") for r in records if r["status"] == "ok"]
    statuses = [r["status"] for r in records]
    found = (f"{len(records)} of {planned} cases: "
             f"{verdicts.count('PASS')} passed, {verdicts.count('FAIL')} "
             f"failed, {verdicts.count('NOT CHECKED')} not checked, "
             f"{statuses.count('oom')} out of memory, "
             f"{statuses.count('error')} errors, "
             f"{planned - len(records)} not reached")
    # "N/A (why)" counts as N/A.
    targets = [t["verdict"].split(" (")[0]
               for t in result.get("targets", [])]
    names = sorted(set(targets))
    if names:
        found += "; targets: " + ", ".join(
            f"{targets.count(n)} {n}" for n in names)
    return found


def line(name, code, seconds, limit, junit=None, benchmark=None):
    timed_out = code in TIMED_OUT
    head = (f"{name}: ran {seconds} s (limit {limit} s), exit {code}, "
            f"timed out: {'yes' if timed_out else 'no'}")
    if junit:
        return f"{head}; {tests_found(junit)}"
    if benchmark:
        return f"{head}; {benchmark_found(benchmark)}"
    return head


def newest(pattern, since):
    """The newest file matching `pattern` written after `since` (epoch
    seconds), or None: an earlier run's results are not this step's."""
    paths = [p for p in glob.glob(pattern) if os.path.getmtime(p) >= since]
    return max(paths, key=os.path.getmtime, default=None)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("code", type=int)
    parser.add_argument("seconds", type=int)
    parser.add_argument("limit", type=int)
    parser.add_argument("--junit")
    parser.add_argument("--benchmark", help="a glob of the step's JSON")
    parser.add_argument("--since", type=float, default=0.0)
    args = parser.parse_args(argv)
    benchmark = None
    if args.benchmark:
        benchmark = newest(args.benchmark, args.since) or "none"
    print(line(args.name, args.code, args.seconds, args.limit,
               junit=args.junit, benchmark=benchmark))
    return 0


if __name__ == "__main__":
    sys.exit(main())
