"""The dev stack's credentials: a NATS user per service (and per integrator), Redis ACL users.

NATS reads its users from `nats/auth.conf` (rendered by `autopay_contracts.permissions`), Redis
gets `requirepass` for the operator and one ACL user per service, limited to the stack's key
prefix and barred from dangerous commands. Passwords are random, kept in `run.json` (mode 0600)
across restarts, and the URLs handed to each process carry its own user.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
from dataclasses import dataclass, field
from pathlib import Path

from autopay_contracts import Namespace
from autopay_contracts.permissions import (
    ADMIN_USER,
    SERVICES,
    NatsUser,
    every_service_user,
    integrator_permissions,
    integrator_user,
    nats_authorization,
)
from autopay_runtime.settings import url_with_credentials
from autopay_store.keys import Keys

REDIS_SERVICE_RULES = (
    "&* +@all -@dangerous +info +client|setname"
    " +cluster|slots +cluster|shards +cluster|nodes +cluster|info"
)
"""What a service's Redis user may run: everything but the dangerous commands (FLUSHALL,
CONFIG, KEYS, DEBUG, SHUTDOWN...), on the stack's keys only; and the read-only CLUSTER
subcommands a Cluster client learns the nodes and slots with."""

INTEGRATORS_FILE = "integrators.json"
AUTH_FILE = "auth.conf"


def _passwords(names: list[str], known: dict[str, str] | None) -> dict[str, str]:
    known = dict(known or {})
    for name in names:
        known.setdefault(name, secrets.token_urlsafe(18))
    return known


@dataclass
class StackCredentials:
    nats: dict[str, str] = field(default_factory=dict)
    redis: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load_or_create(cls, persisted: dict) -> StackCredentials:
        names = [ADMIN_USER, *SERVICES]
        saved = persisted.get("credentials") or {}
        return cls(_passwords(names, saved.get("nats")), _passwords(names, saved.get("redis")))

    def as_dict(self) -> dict:
        return {"nats": self.nats, "redis": self.redis}

    # --- NATS ---------------------------------------------------------------------------------
    def nats_url(self, base: str, user: str = ADMIN_USER) -> str:
        return url_with_credentials(base, user, self.nats[user])

    def write_nats_auth(self, nats_dir: Path, ns: Namespace) -> Path:
        """Render `auth.conf`: the service users and every integrator issued so far."""
        nats_dir.mkdir(parents=True, exist_ok=True)
        users = every_service_user(ns, self.nats)
        for merchant_id, password in integrators(nats_dir).items():
            name = integrator_user(merchant_id)
            users.append(NatsUser(name, password, integrator_permissions(ns, merchant_id)))
        path = nats_dir / AUTH_FILE
        path.write_text(nats_authorization(users))
        path.chmod(0o600)
        return path

    # --- Redis --------------------------------------------------------------------------------
    def redis_url(self, base: str, user: str = ADMIN_USER) -> str:
        if user == ADMIN_USER:
            return url_with_credentials(base, "", self.redis[ADMIN_USER])
        return url_with_credentials(base, user, self.redis[user])

    def redis_acl(self, prefix: str) -> tuple[str, ...]:
        keys = Keys(prefix)
        return tuple(
            f"{name} on >{self.redis[name]} ~{keys.service_keyspace(name)} {REDIS_SERVICE_RULES}"
            for name in SERVICES
        )


def integrators(nats_dir: Path) -> dict[str, str]:
    path = nats_dir / INTEGRATORS_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def add_integrator(nats_dir: Path, merchant_id: str) -> str:
    """Issue (or re-issue) the integrator user of `merchant_id`; returns its new password."""
    found = integrators(nats_dir)
    found[merchant_id] = secrets.token_urlsafe(18)
    path = nats_dir / INTEGRATORS_FILE
    path.write_text(json.dumps(found, indent=2))
    path.chmod(0o600)
    return found[merchant_id]


def reload_nats(pid: int) -> None:
    """nats-server re-reads its configuration (users included) on SIGHUP."""
    os.kill(pid, signal.SIGHUP)
