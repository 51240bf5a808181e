"""`make bench`: the performance figures, measured on this machine, printed as one JSON line.

Each benchmark is a module here with `run() -> dict[str, float]`; `python -m
autopay_devtools.bench` runs them all (or those named on the command line) and prints their
merged figures as the last line of output. Ratios are taken against a baseline measured in the
same run (`bare_fastapi_rps`, see `gateway.bare_baseline`).

Every run keeps its output in a directory of its own (`AUTOPAY_BENCH_OUT`, else
`.autopay/bench/<UTC time>/`): the figures, and with `AUTOPAY_BENCH_PROFILE=1` a py-spy
profile of each service process a benchmark starts (`profile_<name>.txt`, collapsed stacks)
with its top costs summed up in `profiles.json`.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

PROFILE_RATE_HZ = 250


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of `values` (q in 0..1)."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def output_dir() -> Path:
    """This run's output directory (made on first use; the runner names it for the run)."""
    named = os.environ.get("AUTOPAY_BENCH_OUT")
    if not named:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        named = os.environ["AUTOPAY_BENCH_OUT"] = str(Path(".autopay/bench") / stamp)
    path = Path(named)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def dev_stack(name: str) -> Iterator[tuple[dict, Path]]:
    """A detached dev stack in a temporary state dir for benchmark `name`: its `stack.json`
    and state dir; stopped and removed afterwards."""
    import tempfile
    import time

    from autopay_devtools import devstack

    with tempfile.TemporaryDirectory(prefix=f"autopay-bench-{name}-") as tmp:
        state_dir = Path(tmp)
        started = time.monotonic()
        stack = devstack.start_detached(state_dir)
        elapsed = time.monotonic() - started
        print(f"[bench {name}] dev stack ready in {elapsed:.1f}s", file=sys.stderr, flush=True)
        try:
            yield stack, state_dir
        finally:
            devstack.stop(state_dir)


def alternating(items: tuple, round_: int) -> tuple:
    """The order to measure `items` in on round `round_`: as given, then reversed, and so on,
    so that a machine getting busier or quieter during a run favours none of them."""
    return items if round_ % 2 == 0 else items[::-1]


def stop_processes(processes: list[subprocess.Popen], timeout: float = 30.0) -> None:
    """SIGTERM to every process still running, then each waited for (killed after `timeout`)."""
    running = [process for process in processes if process.poll() is None]
    for process in running:
        process.terminate()
    for process in running:
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def profiling() -> bool:
    return os.environ.get("AUTOPAY_BENCH_PROFILE", "").strip().lower() in {"1", "true", "yes"}


class Profile:
    """py-spy sampling one service process from outside (no change to the process), for as
    long as the process lives or for `duration_s`; `finish` waits for the profile once the
    process was stopped (or the duration is over)."""

    def __init__(self, pid: int, name: str, duration_s: float | None = None) -> None:
        self.name = name
        self.path = output_dir() / f"profile_{name}.txt"
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        command = [spy, "record", "--pid", str(pid), "--format", "raw", "--nonblocking"]
        if duration_s is not None:  # a window of the process's life, not all of it
            command += ["--duration", str(max(1, round(duration_s)))]
        self._process = subprocess.Popen(
            [*command, "--rate", str(PROFILE_RATE_HZ), "--output", str(self.path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def finish(self, timeout: float = 30.0) -> Path | None:
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(5)
        if not self.path.exists():
            return None
        summary = top_costs(self.path)
        summaries = output_dir() / "profiles.json"
        known = json.loads(summaries.read_text()) if summaries.exists() else {}
        known[self.name] = summary
        summaries.write_text(json.dumps(known, indent=2))
        return self.path


class ServiceProfiler:
    """Profiles every service process the benchmarks start (`python -m autopay_<service>`,
    found among this process's descendants every half second), so no benchmark needs to know
    about profiling; each profile is summed up when its process ends."""

    def __init__(self) -> None:
        self._seen: set[int] = set()
        self._profiles: list[Profile] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="profiler", daemon=True)

    def __enter__(self) -> ServiceProfiler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        for running in self._profiles:
            running.finish()

    def _watch(self) -> None:
        import psutil

        counts: Counter[str] = Counter()
        while not self._stop.wait(0.5):
            with contextlib.suppress(psutil.Error):
                for child in psutil.Process().children(recursive=True):
                    if child.pid in self._seen:
                        continue
                    self._seen.add(child.pid)
                    with contextlib.suppress(psutil.Error):
                        service = _service_of(child.cmdline())
                        if service is not None:
                            counts[service] += 1
                            name = f"{service}-{counts[service]}"
                            self._profiles.append(Profile(child.pid, name))


def _service_of(argv: list[str]) -> str | None:
    """`autopay_matcher` of `python -m autopay_matcher ...` (a service), else None."""
    for flag, module in itertools.pairwise(argv):
        if flag == "-m" and module.startswith("autopay_") and module in SERVICE_MODULES:
            return module.removeprefix("autopay_").replace("_", "-")
    return None


HARNESS_MODULES = {"autopay_testing.imap": "imap-server", "autopay_testing.telegram": "telegram"}


def process_kind(argv: list[str]) -> str:
    """What a process of the stack is: a service (`matcher`), `nats`, `redis`, a piece of the
    test harness (`imap-server`), else its program's name."""
    if service := _service_of(argv):
        return service
    for flag, module in itertools.pairwise(argv):
        if flag == "-m" and module in HARNESS_MODULES:
            return HARNESS_MODULES[module]
        if flag == "-m" and module == "autopay_cli.main":
            return "supervisor"
    program = Path(argv[0]).name if argv else "?"
    for server in ("nats-server", "redis-server"):
        if program.startswith(server):
            return server.removesuffix("-server")
    return program


def cpu_seconds(root_pid: int) -> dict[str, float]:
    """CPU time (user + system) used so far by each kind of process under `root_pid`, the root
    included, summed per kind."""
    import psutil

    used: Counter[str] = Counter()
    root = psutil.Process(root_pid)
    for process in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            used[process_kind(process.cmdline())] += times.user + times.system
    return dict(used)


SERVICE_MODULES = {
    "autopay_gateway",
    "autopay_mail_ingest",
    "autopay_matcher",
    "autopay_notifier",
    "autopay_merchant_bot",
}


def top_costs(path: Path, count: int = 15) -> dict[str, list[list[object]]]:
    """From py-spy's collapsed stacks: the functions taking the largest share of the samples,
    by self time (the frame on top) and by total time (anywhere in the stack)."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        frames = [frame.strip() for frame in stack.split(";") if frame.strip()]
        if not frames:
            continue
        samples += int(n)
        own[_short(frames[-1])] += int(n)
        for frame in {_short(f) for f in frames[1:]}:
            total[frame] += int(n)

    def share(counter: Counter[str]) -> list[list[object]]:
        return [[name, round(n / samples, 3)] for name, n in counter.most_common(count)]

    return {"samples": [[samples]], "self": share(own), "total": share(total)}


def _short(frame: str) -> str:
    """`function (path/to/module.py:line)` → `function (module.py)`."""
    name, _, where = frame.partition(" (")
    module = where.split(":")[0].rsplit("/", 1)[-1]
    return f"{name} ({module})" if module else name
