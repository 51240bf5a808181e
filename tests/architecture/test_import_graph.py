"""Services are deployable alone: no service package imports another service package,
and libraries never import services (SPEC §1, issue #2 acceptance 6)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = {
    path.parent.parent.name: path.name
    for path in ROOT.glob("services/*/src/autopay_*")
    if path.is_dir()
}
LIBS = {path.name for path in ROOT.glob("libs/*/src/autopay_*") if path.is_dir()}
SERVICE_PACKAGES = set(SERVICES.values())


def imported_packages(package_dir: Path, root: Path = ROOT) -> dict[str, set[str]]:
    """Top-level package of every import, with the files that import it."""
    found: dict[str, set[str]] = {}
    for file in package_dir.rglob("*.py"):
        tree = ast.parse(file.read_text(), filename=str(file))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module":
                names = [a.value for a in node.args if isinstance(a, ast.Constant)]
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(str(file.relative_to(root)))
    return found


def test_there_are_five_services_and_the_shared_libs():
    assert set(SERVICES) == {"gateway", "mail-ingest", "matcher", "notifier", "merchant-bot"}
    assert {"autopay_contracts", "autopay_runtime", "autopay_store"} <= LIBS


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_service_imports_no_other_service(service):
    own = SERVICES[service]
    imports = imported_packages(ROOT / "services" / service / "src" / own)
    foreign = {pkg: files for pkg, files in imports.items() if pkg in SERVICE_PACKAGES - {own}}
    assert foreign == {}, f"{service} imports other services: {foreign}"


@pytest.mark.parametrize("lib", sorted(LIBS))
def test_libraries_import_no_service(lib):
    lib_dir = next(ROOT.glob(f"libs/*/src/{lib}"))
    imports = imported_packages(lib_dir)
    assert {pkg for pkg in imports if pkg in SERVICE_PACKAGES} == set()


def test_the_checker_sees_imports(tmp_path):
    pkg = tmp_path / "autopay_x"
    pkg.mkdir()
    (pkg / "a.py").write_text("import autopay_matcher.domain\nfrom autopay_gateway import api\n")
    assert {"autopay_matcher", "autopay_gateway"} <= set(imported_packages(pkg, tmp_path))
