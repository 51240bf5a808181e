"""`libs/store` owns every Redis key and every Lua script (issue #10).

Outside `libs/store`, no code may name a Redis key or hold a script: it goes through the store's
classes, which build keys with `autopay_store.keys.Keys` and load scripts from `.lua` files with
`autopay_store.scripts.register`. So one place knows every key (its hash tag, its Cluster slot,
which Redis user may touch it) and every script (compiled by libs/store's tests).

What is scanned: every `.py` under `services/`, `tools/` and `libs/` but `libs/store`. Test
code (`tests/` folders, `conftest.py`) is held only to the `global_key` rule: tests spell keys
out on purpose (`f"{redis_prefix}:mailbox:{id}:cursor"`) or take them from `Keys`, to read
what a service wrote and to fail when a change in libs/store renames a key under running data;
and a test may script Redis to test a Redis client (`test_redis_batching.py`).

What counts as an offence:
- Lua: a string constant (or f-string part) with `redis.call(` or `redis.pcall(`;
- running or loading a script: a call `.register_script(`, `.eval(`, `.evalsha(`, `.eval_ro(`,
  `.evalsha_ro(`, `.script_load(`, `.fcall(`, `.fcall_ro(`, `.function_load(`;
- a key: a string constant or f-string that starts with AutoPay's default prefix `ap:`; an
  f-string with a `{...prefix}:` part (`f"{settings.redis_prefix}:ratelimit:{id}"`); `":".join`
  of a list that holds a `...prefix` name; `prefix + ":..."`. Docstrings and other bare string
  statements are text, not keys, and are skipped;
- a key from `Keys` or `DeliveryKeys`: reading one of their key members (`order`, `outbox`,
  `mailbox_health`, ...: those that give a name under the prefix, found by calling them) on
  `keys`, `<anything>.keys` or `Keys(...)`. Building a `Keys(prefix)` to hand to a store class
  is fine, and so is `service_keyspace` (an ACL pattern, not a key);
- `.global_key` anywhere, tests included (the escape hatch is gone; each key has a method).
"""

from __future__ import annotations

import ast
import inspect
import itertools
from functools import cache
from pathlib import Path

from autopay_store.deliveries import DeliveryKeys
from autopay_store.keys import Keys

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("services", "tools", "libs")
OWNER = Path("libs/store")
LUA_MARKERS = ("redis.call(", "redis.pcall(")
SCRIPT_CALLS = {
    "register_script",
    "eval",
    "evalsha",
    "eval_ro",
    "evalsha_ro",
    "script_load",
    "fcall",
    "fcall_ro",
    "function_load",
}
DEFAULT_PREFIX = "ap:"
KEY_CLASSES = (Keys, DeliveryKeys)


@cache
def key_members() -> frozenset[str]:
    """The members of the key classes that give a key: called with "x" for each parameter
    (properties read), what starts with the prefix and is no glob pattern."""
    found = set()
    for cls in KEY_CLASSES:
        sample = cls("PFX")
        for name in dir(cls):
            if name.startswith("_") or name == "prefix":
                continue
            if isinstance(inspect.getattr_static(cls, name), property):
                value = getattr(sample, name)
            else:
                member = getattr(sample, name)
                if not callable(member):
                    continue
                required = [
                    p
                    for p in inspect.signature(member).parameters.values()
                    if p.default is p.empty
                    and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                ]
                value = member(*["x"] * len(required))
            if isinstance(value, str) and value.startswith("PFX:") and "*" not in value:
                found.add(name)
    return frozenset(found)


def _keys_object(node: ast.AST) -> bool:
    """`keys`, `self.keys`, `settings.keys`, `Keys(prefix)`, `DeliveryKeys(prefix)`."""
    if isinstance(node, ast.Name):
        return node.id == "keys"
    if isinstance(node, ast.Attribute):
        return node.attr == "keys"
    if isinstance(node, ast.Call):
        name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
        return name in {cls.__name__ for cls in KEY_CLASSES}
    return False


def is_test(path: Path) -> bool:
    return "tests" in path.parts or path.name == "conftest.py"


def _prefix_name(node: ast.AST) -> bool:
    """`prefix`, `redis_prefix`, `self.prefix`, `settings.redis_prefix`, ..."""
    name = getattr(node, "attr", None) or getattr(node, "id", None)
    return isinstance(name, str) and name.endswith("prefix")


def _bare_strings(tree: ast.AST) -> set[int]:
    """ids of the string constants that are statements of their own (docstrings, notes)."""
    return {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    }


def _fstring_key(node: ast.JoinedStr) -> bool:
    parts = node.values
    if parts and isinstance(parts[0], ast.Constant) and str(parts[0].value).startswith("ap:"):
        return True
    for value, following in itertools.pairwise(parts):
        if (
            isinstance(value, ast.FormattedValue)
            and _prefix_name(value.value)
            and isinstance(following, ast.Constant)
            and str(following.value).startswith(":")
        ):
            return True
    return False


def _joined_key(node: ast.Call) -> bool:
    """`":".join([prefix, ...])`"""
    func = node.func
    if not (
        isinstance(func, ast.Attribute)
        and func.attr == "join"
        and isinstance(func.value, ast.Constant)
        and func.value.value == ":"
        and node.args
        and isinstance(node.args[0], ast.List | ast.Tuple)
    ):
        return False
    return any(_prefix_name(element) for element in node.args[0].elts)


def _concatenated_key(node: ast.BinOp) -> bool:
    """`prefix + ":..."`"""
    return (
        isinstance(node.op, ast.Add)
        and _prefix_name(node.left)
        and isinstance(node.right, ast.Constant)
        and str(node.right.value).startswith(":")
    )


def offences(path: Path, source: str | None = None, *, test_code: bool = False) -> list[str]:
    """Where the file at `path` names a Redis key or holds a script, as `line: what`."""
    tree = ast.parse(source if source is not None else path.read_text(), filename=str(path))
    bare = _bare_strings(tree)
    fstring_parts = {
        id(part)
        for node in ast.walk(tree)
        if isinstance(node, ast.JoinedStr)
        for part in node.values
    }
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "global_key":
            found.append((node.lineno, "Keys.global_key (give the key a named method)"))
        if test_code:
            continue
        if (
            isinstance(node, ast.Attribute)
            and node.attr in key_members()
            and _keys_object(node.value)
        ):
            found.append((node.lineno, f"Redis key from Keys.{node.attr} (use a store class)"))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in bare:
            if any(marker in node.value for marker in LUA_MARKERS):
                found.append((node.lineno, "Lua source (a .lua file in libs/store)"))
            elif node.value.startswith(DEFAULT_PREFIX) and id(node) not in fstring_parts:
                found.append((node.lineno, f"Redis key {node.value[:40]!r}"))
        elif isinstance(node, ast.JoinedStr) and _fstring_key(node):
            found.append((node.lineno, "Redis key built with an f-string"))
        elif isinstance(node, ast.Call):
            name = getattr(node.func, "attr", None)
            if name in SCRIPT_CALLS:
                found.append((node.lineno, f".{name}() (scripts belong to libs/store)"))
            elif _joined_key(node):
                found.append((node.lineno, 'Redis key built with ":".join'))
        elif isinstance(node, ast.BinOp) and _concatenated_key(node):
            found.append((node.lineno, "Redis key built with +"))
    return [f"{line}: {what}" for line, what in sorted(set(found))]


def scanned_files(root: Path = ROOT) -> list[Path]:
    return sorted(
        path
        for folder in SCANNED
        for path in (root / folder).rglob("*.py")
        if not path.relative_to(root).is_relative_to(OWNER)
        and ".venv" not in path.parts
        and "node_modules" not in path.parts
    )


def all_offences(root: Path = ROOT) -> dict[str, list[str]]:
    report = {}
    for path in scanned_files(root):
        hits = offences(path, test_code=is_test(path.relative_to(root)))
        if hits:
            report[str(path.relative_to(root))] = hits
    return report


def test_only_libs_store_names_redis_keys_and_holds_scripts():
    assert all_offences() == {}


def test_the_scan_covers_the_services_the_tools_and_the_libraries():
    files = {str(path.relative_to(ROOT)) for path in scanned_files()}
    assert "services/gateway/src/autopay_gateway/cards.py" in files
    assert "services/mail-ingest/src/autopay_mail_ingest/watcher.py" in files
    assert "tools/cli/src/autopay_cli/main.py" in files
    assert "tools/devtools/src/autopay_devtools/devstack.py" in files
    assert "libs/runtime/src/autopay_runtime/connections.py" in files
    assert not any(name.startswith("libs/store/") for name in files)


OFFENDER = '''
"""A docstring may mention `ap:mailbox:<m>:cursor` and `{prefix}:x`: it is text."""
import redis.asyncio as aioredis

from autopay_store.keys import Keys

TAKE = """
local n = redis.call('INCR', KEYS[1])
return n
"""
NAMED = "ap:ratelimit:global"


class Limiter:
    def __init__(self, redis: aioredis.Redis, keys: Keys, prefix: str) -> None:
        self.redis = redis
        self.keys = keys
        self.prefix = prefix
        self.take = redis.register_script(TAKE)

    async def hit(self, key_id: str) -> None:
        await self.redis.eval("return 1", 0)
        await self.redis.evalsha("0" * 40, 1, self.keys.global_key("ratelimit", key_id))
        await self.redis.incr(f"{self.prefix}:ratelimit:{key_id}")
        await self.redis.incr(":".join([self.prefix, "ratelimit", key_id]))
        await self.redis.incr(self.prefix + ":ratelimit")
        await self.redis.incr(f"ap:{key_id}")
        await self.redis.hgetall(self.keys.mailbox_health(key_id))
        await self.redis.exists(Keys(self.prefix).outbox)
'''

CLEAN = '''
"""Reads `ap:ratelimit:<id>` through the store."""
from autopay_store.keys import Keys
from autopay_store.ratelimit import RateLimiter


def acl(prefix: str) -> str:
    keys = Keys(prefix)
    return f"~{keys.service_keyspace('gateway')}"


async def hit(redis, prefix: str, key_id: str) -> float:
    limiter = RateLimiter(redis, Keys(prefix))
    label = f"{key_id}:{len(key_id)}"
    return await limiter.take(label, 1.0, 1, now=0.0)
'''


def test_the_checker_catches_planted_offenders(tmp_path):
    package = tmp_path / "services" / "shop" / "src" / "autopay_shop"
    package.mkdir(parents=True)
    (package / "limiter.py").write_text(OFFENDER)
    (package / "clean.py").write_text(CLEAN)
    owned = tmp_path / "libs" / "store" / "src" / "autopay_store" / "mine.py"
    owned.parent.mkdir(parents=True)
    owned.write_text(OFFENDER)
    test = tmp_path / "services" / "shop" / "tests" / "test_limiter.py"
    test.parent.mkdir(parents=True)
    test.write_text(OFFENDER)

    report = all_offences(tmp_path)

    assert set(report) == {
        "services/shop/src/autopay_shop/limiter.py",
        "services/shop/tests/test_limiter.py",
    }
    assert report["services/shop/src/autopay_shop/limiter.py"] == [
        "7: Lua source (a .lua file in libs/store)",
        "11: Redis key 'ap:ratelimit:global'",
        "19: .register_script() (scripts belong to libs/store)",
        "22: .eval() (scripts belong to libs/store)",
        "23: .evalsha() (scripts belong to libs/store)",
        "23: Keys.global_key (give the key a named method)",
        "24: Redis key built with an f-string",
        '25: Redis key built with ":".join',
        "26: Redis key built with +",
        "27: Redis key built with an f-string",
        "28: Redis key from Keys.mailbox_health (use a store class)",
        "29: Redis key from Keys.outbox (use a store class)",
    ]
    # test code spells keys and scripts Redis as it likes, but has no escape hatch either
    assert report["services/shop/tests/test_limiter.py"] == [
        "23: Keys.global_key (give the key a named method)"
    ]


def test_the_key_members_are_the_named_keys():
    members = key_members()
    assert {"order", "outbox", "mailbox_health", "mailbox_cursor", "rate_limit", "due"} <= members
    assert "service_keyspace" not in members  # an ACL pattern
    assert "prefix" not in members
