"""Run the benchmarks: ``python -m bench [NAME ...]`` (``make bench``).

Each benchmark module has ``run() -> dict`` that measures the product against a baseline in the
same process run and reports ratios (these machines are shared and noisy: absolute times are
context, the ratios are the result). The combined JSON is printed and written to
``bench/results/<UTC time>.json``, with each benchmark's wall time in ``elapsed_s`` (all eight
take about five minutes on the 2-core development VM: alarm latency ~3 min (both layouts),
scene ~30 s, ingest ~23 s, thresholds ~14 s, camera ~13 s, response ~15 s, localisation ~5 s,
dispersion under 1 s).
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time
from pathlib import Path

BENCHMARKS = (
    "dispersion",
    "ingest",
    "thresholds",
    "camera",
    "localisation",
    "response",
    "alarm_latency",
    "scene",
)
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", default=list(BENCHMARKS))
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    report: dict[str, object] = {
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "benchmarks": {},
    }
    results: dict[str, object] = {}
    elapsed_s: dict[str, float] = {}
    for name in args.names or BENCHMARKS:
        module = importlib.import_module(f"bench.{name}")
        started = time.perf_counter()
        results[name] = module.run()
        elapsed_s[name] = time.perf_counter() - started
    report["benchmarks"] = results
    report["elapsed_s"] = elapsed_s
    text = json.dumps(report, indent=2, sort_keys=True)
    print(text)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    (RESULTS_DIR / f"{stamp}.json").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
