from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
import time
import traceback

from autopay_devtools.bench import ServiceProfiler, output_dir, profiling

LOAD_AT_START = round(os.getloadavg()[0], 2)
"""The 1-minute load average as the run began: near 0 on a quiet machine."""
BENCHMARKS = ["e2e", "gateway", "ingest", "matcher", "notifier", "cluster", "scale", "load"]
"""`load` last: its stack at full rate leaves seconds of backlog and disk writes behind it."""


def main(names: list[str]) -> int:
    figures: dict[str, object] = {}
    failed: list[str] = []
    print(f"[bench] output in {output_dir()}", file=sys.stderr, flush=True)
    with ServiceProfiler() if profiling() else contextlib.nullcontext():
        run_each(names or BENCHMARKS, figures, failed)
    figures.update(derived(figures))
    if failed:
        figures["failed"] = failed
    figures["output_dir"] = str(output_dir())
    (output_dir() / "figures.json").write_text(json.dumps(figures, indent=2, sort_keys=True))
    print(json.dumps(figures, sort_keys=True))
    return 1 if failed else 0


def run_each(names: list[str], figures: dict[str, object], failed: list[str]) -> None:
    for name in names:
        started = time.monotonic()
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        try:
            figures.update(importlib.import_module(f"autopay_devtools.bench.{name}").run())
        except Exception:
            traceback.print_exc()
            failed.append(name)
        print(f"[bench] {name} done in {time.monotonic() - started:.1f}s", file=sys.stderr)


RATIOS = {"matcher_ratio": "matcher_credits_per_s", "notifier_ratio": "notifier_webhooks_per_s"}


def derived(figures: dict[str, object]) -> dict[str, object]:
    """The machine (`cpu_count`, its load when the run began) and each throughput divided by
    `bare_fastapi_rps` of this run; the baseline is measured on its own when no gateway
    benchmark ran."""
    found: dict[str, object] = {"cpu_count": os.cpu_count(), "loadavg_1m_at_start": LOAD_AT_START}
    wanted = [ratio for ratio, key in RATIOS.items() if key in figures]
    bare = figures.get("bare_fastapi_rps")
    if wanted and bare is None:
        from autopay_devtools.bench.gateway import bare_baseline

        bare = found["bare_fastapi_rps"] = bare_baseline()
    for ratio in wanted:
        found[ratio] = round(float(figures[RATIOS[ratio]]) / float(bare), 3)  # type: ignore[arg-type]
    return found


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
