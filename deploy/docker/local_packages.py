"""The local packages an image installs, for `deploy/docker/Dockerfile`'s builder stage.

`python local_packages.py services/gateway` prints `./services/gateway` and, transitively, the
folder of every `autopay-*` distribution its pyproject.toml declares (found by name among the
packages of the build context: libs/*, services/*, tools/*), one per line, the package last. So
an image holds exactly what the package's metadata asks for; pip takes the third-party
dependencies from the index, pinned by constraints.txt. A declared `autopay-*` distribution
that is not in the context (the dev-only autopay-testing and autopay-devtools never are: see the
root .dockerignore) fails the build.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

LOCAL = "autopay-"
FOLDERS = ("libs", "services", "tools")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    found = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if found is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return normalize(found.group(1))


def project(folder: Path) -> dict:
    return tomllib.loads((folder / "pyproject.toml").read_text())["project"]


def packages(root: Path) -> dict[str, Path]:
    """Distribution name -> its folder (relative to `root`), for every package in the tree."""
    found = {}
    for group in FOLDERS:
        for manifest in sorted((root / group).glob("*/pyproject.toml")):
            folder = manifest.parent.relative_to(root)
            found[normalize(project(root / folder)["name"])] = folder
    return found


def local_closure(package: str | Path, root: Path = Path()) -> list[Path]:
    """`package` and the folders of its local dependencies, dependencies first."""
    by_name = packages(root)
    ordered: list[Path] = []

    def visit(folder: Path, wanted_by: str) -> None:
        if folder in ordered:
            return
        for requirement in project(root / folder).get("dependencies", []):
            name = requirement_name(requirement)
            if not name.startswith(LOCAL):
                continue
            if name not in by_name:
                raise SystemExit(
                    f"{folder} depends on {name}, which is not in the build context"
                    f" (wanted by {wanted_by}); an image ships no dev-only package"
                )
            visit(by_name[name], str(folder))
        ordered.append(folder)

    visit(Path(package), str(package))
    return ordered


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python local_packages.py <package folder>", file=sys.stderr)
        return 2
    for folder in local_closure(argv[0]):
        print(f"./{folder.as_posix()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
