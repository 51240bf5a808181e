"""Where the CLI finds the system: a dev stack's state dir, or `AUTOPAY_*` variables."""

from __future__ import annotations

import json
from pathlib import Path

from autopay_runtime.settings import ServiceSettings
from autopay_store.keys import Keys
from autopay_store.secrets import SecretBox

RUN_FILE = "run.json"
STACK_FILE = "stack.json"


class CliSettings(ServiceSettings):
    """The same variables the services read (AUTOPAY_*)."""

    imap_host: str = "imap.gmail.com"
    imap_port: int = 993
    imap_tls: bool = True

    @property
    def keys(self) -> Keys:
        return Keys(self.redis_prefix)

    def secret_box(self) -> SecretBox:
        return SecretBox(self.secret_keys.get_secret_value())


def load_settings(state_dir: Path | None) -> CliSettings:
    """From `state_dir/run.json` when given (the dev stack), else from the environment."""
    if state_dir is None:
        return CliSettings()
    run = read_json(state_dir / RUN_FILE)
    return CliSettings(**run["env"])


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def write_json(path: Path, data: dict, private: bool = False) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    if private:
        tmp.chmod(0o600)
    tmp.replace(path)
