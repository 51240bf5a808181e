"""The benchmark runner's profiling: which processes it profiles, and how a py-spy profile is
summed up (collapsed stacks, as `py-spy record --format raw` writes them)."""

from __future__ import annotations

import subprocess
import sys
import time

from autopay_devtools.bench import ServiceProfiler, _service_of, top_costs


def test_only_service_processes_are_profiled():
    assert _service_of(["/v/bin/python", "-m", "autopay_matcher"]) == "matcher"
    assert _service_of(["python", "-u", "-m", "autopay_mail_ingest", "--x"]) == "mail-ingest"
    assert _service_of(["python", "-m", "autopay_devtools.bench.gateway", "bare"]) is None
    assert _service_of(["nats-server", "-p", "4222"]) is None


def test_top_costs_by_self_and_total_time(tmp_path):
    raw = tmp_path / "p.txt"
    raw.write_text(
        "main (app/__main__.py:10);handle (app/consumer.py:40);encode (lib/json.py:5) 6\n"
        "main (app/__main__.py:10);handle (app/consumer.py:41) 3\n"
        "main (app/__main__.py:10);poll (lib/loop.py:99) 1\n"
    )
    costs = top_costs(raw)
    assert costs["samples"] == [[10]]
    assert costs["self"][0] == ["encode (json.py)", 0.6]
    assert ["handle (consumer.py)", 0.3] in costs["self"]
    assert costs["total"][0] == ["handle (consumer.py)", 0.9]  # 6 + 3: anywhere in the stack


def test_a_service_process_started_meanwhile_gets_a_profile(tmp_path, monkeypatch):
    """A real py-spy on a real child that calls itself a service (`-m autopay_matcher` is
    looked for in its argv; the child is a busy Python loop)."""
    monkeypatch.setenv("AUTOPAY_BENCH_OUT", str(tmp_path))
    busy = "import time\nend = time.time() + 3\nwhile time.time() < end: sum(range(1000))"
    with ServiceProfiler():
        child = subprocess.Popen([sys.executable, "-c", busy, "-m", "autopay_matcher"])
        time.sleep(0.5)
        child.wait(30)
    assert (tmp_path / "profile_matcher-1.txt").exists()
    summary = (tmp_path / "profiles.json").read_text()
    assert "matcher-1" in summary and "<module>" in summary
