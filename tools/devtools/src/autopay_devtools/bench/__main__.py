from __future__ import annotations

import importlib
import json
import sys
import time
import traceback

BENCHMARKS = ["e2e", "gateway", "ingest", "matcher", "notifier", "cluster"]


def main(names: list[str]) -> int:
    figures: dict[str, object] = {}
    failed = []
    for name in names or BENCHMARKS:
        started = time.monotonic()
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        try:
            figures.update(importlib.import_module(f"autopay_devtools.bench.{name}").run())
        except Exception:
            traceback.print_exc()
            failed.append(name)
        print(f"[bench] {name} done in {time.monotonic() - started:.1f}s", file=sys.stderr)
    if failed:
        figures["failed"] = failed
    print(json.dumps(figures, sort_keys=True))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
