"""Services are deployable alone: no service imports another, libraries never import services,
shipped packages never import the test tooling, and packages import only downward (issue #2
acceptance 6, issue #11). The contracts live in the root pyproject.toml ([tool.importlinter]);
this runs them the way `.ci/run` does, and checks that every package on disk is under them."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
SERVICES = {
    path.parent.parent.name: path.name
    for path in ROOT.glob("services/*/src/autopay_*")
    if path.is_dir()
}
LIBS = {path.name for path in ROOT.glob("libs/*/src/autopay_*") if path.is_dir()}
TOOLS = {path.name for path in ROOT.glob("tools/*/src/autopay_*") if path.is_dir()}
DEV_ONLY = {"autopay_testing", "autopay_devtools"}
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
CONTRACTS = {contract["id"]: contract for contract in CONFIG["contracts"]}


def lint_imports(cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-logo", "--no-cache"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_there_are_five_services_and_the_shared_libs():
    assert set(SERVICES) == {"gateway", "mail-ingest", "matcher", "notifier", "merchant-bot"}
    assert {"autopay_contracts", "autopay_runtime", "autopay_store"} <= LIBS


def test_the_tools_are_the_shipped_cli_and_the_dev_only_devtools():
    assert {"autopay_cli", "autopay_devtools"} == TOOLS


def test_the_contracts_name_every_package():
    services, libs = set(SERVICES.values()), LIBS
    assert set(CONFIG["root_packages"]) == services | libs | TOOLS
    assert set(CONTRACTS["services-independent"]["modules"]) == services
    assert set(CONTRACTS["libs-import-no-service"]["source_modules"]) == libs
    assert set(CONTRACTS["libs-import-no-service"]["forbidden_modules"]) == services
    shipped = (services | libs | TOOLS) - DEV_ONLY
    assert set(CONTRACTS["shipped-import-no-testing"]["source_modules"]) == shipped
    assert set(CONTRACTS["shipped-import-no-testing"]["forbidden_modules"]) == DEV_ONLY
    assert not CONTRACTS["shipped-import-no-testing"].get("ignore_imports"), "no exceptions"
    layered = {
        name.strip()
        for layer in CONTRACTS["layers"]["layers"]
        for name in layer.replace(":", "|").split("|")
    }
    assert layered == services | libs | TOOLS


def test_the_import_contracts_are_kept():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in result.stdout


def test_the_checker_sees_imports(tmp_path):
    """A library that imports a service breaks the contract (the linter really reads imports)."""
    for package, source in {
        "autopay_lib": "import autopay_svc.api\n",
        "autopay_svc": "",
    }.items():
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text(source)
        (tmp_path / package / "api.py").write_text("")
    (tmp_path / "pyproject.toml").write_text(
        '[tool.importlinter]\nroot_packages = ["autopay_lib", "autopay_svc"]\n'
        '[[tool.importlinter.contracts]]\nname = "no"\ntype = "forbidden"\n'
        'source_modules = ["autopay_lib"]\nforbidden_modules = ["autopay_svc"]\n'
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path)}
    result = lint_imports(tmp_path, env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "autopay_lib -> autopay_svc.api" in result.stdout
