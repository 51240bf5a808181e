"""Streams are declared by `autopay_contracts.provision_streams` alone (issue #2): a service that
declared them would overwrite their options at every rollout (FastStream: last writer wins)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DECLARING_CALLS = {"add_stream", "update_stream", "create_key_value", "create_object_store"}


def _declarations(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        name = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
        if name in DECLARING_CALLS:
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}()")
        if name == "JStream":
            declare = next((kw.value for kw in node.keywords if kw.arg == "declare"), None)
            if not (isinstance(declare, ast.Constant) and declare.value is False):
                found.append(
                    f"{path.relative_to(ROOT)}:{node.lineno} JStream without declare=False"
                )
    return found


def test_only_contracts_declares_streams():
    sources = [
        path
        for folder in ("services", "libs", "tools")
        for path in (ROOT / folder).rglob("src/**/*.py")
    ]
    offenders = [
        hit
        for path in sources
        if "autopay_contracts" not in path.parts
        for hit in _declarations(path)
    ]
    assert offenders == []
    owner = ROOT / "libs/contracts/src/autopay_contracts/streams.py"
    assert _declarations(owner), "provision_streams must declare the streams"
