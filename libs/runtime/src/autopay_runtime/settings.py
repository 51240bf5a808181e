"""Settings every service has; each service subclasses it with its own fields."""

from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from autopay_contracts import Namespace


def nats_servers(url: str) -> list[str]:
    """The servers of a NATS URL: `nats://a:4222,nats://b:4222` (a cluster) is two. nats-py
    and FastStream take a list of URLs but read a string as one server."""
    return [part.strip() for part in url.split(",") if part.strip()]


def nats_connect_options(url: str) -> dict[str, Any]:
    """`nats.connect(**options)` for a NATS URL, one server or several comma-separated:
    `servers` without credentials, and the credentials (percent-decoded, which nats-py does not
    do with the ones it finds in a URL) as `user`/`password`, or `token` for `nats://token@host`.
    Every server of a cluster must carry the same credentials (or none)."""
    servers, found = [], set()
    for one in nats_servers(url):
        parts = urlsplit(one)
        if parts.username is not None:
            password = None if parts.password is None else unquote(parts.password)
            found.add((unquote(parts.username), password))
        netloc = parts.netloc.rpartition("@")[2]
        servers.append(urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)))
    if len(found) > 1:
        raise ValueError("the servers of one NATS URL carry different credentials")
    options: dict[str, Any] = {"servers": servers}
    for user, password in found:
        if password is None:
            options["token"] = user
        else:
            options |= {"user": user, "password": password}
    return options


def _one_with_credentials(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    if not password or parts.password or parts.username:
        return url
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{parts.netloc}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def is_cluster_url(url: str) -> bool:
    """`redis+cluster://` or `rediss+cluster://`: the Redis at that address is a Cluster."""
    return urlsplit(url).scheme.endswith("+cluster")


def cluster_url(url: str) -> str:
    """`url` with the Cluster scheme (`redis://h:p/0` → `redis+cluster://h:p/0`)."""
    parts = urlsplit(url)
    if parts.scheme.endswith("+cluster"):
        return url
    return urlunsplit((f"{parts.scheme}+cluster", *parts[1:]))


def url_with_credentials(url: str, user: str, password: str) -> str:
    """`url` with `user:password@` before its host, unless it carries credentials already.
    A comma-separated list of URLs (the servers of a NATS cluster) gets them on each one;
    credentials are percent-encoded, so they never add a comma."""
    return ",".join(_one_with_credentials(one, user, password) for one in nats_servers(url))


def plain_url(url: str) -> str:
    """`url` without the Cluster scheme (`redis+cluster://h:p/0` → `redis://h:p/0`), as redis-py
    takes it."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme.removesuffix("+cluster"), *parts[1:]))


class ServiceSettings(BaseSettings):
    """Read from `AUTOPAY_*` environment variables.

    Credentials come either inside the URLs or, so that a URL can live in a ConfigMap and the
    password in a Secret, from `AUTOPAY_NATS_USER`/`AUTOPAY_NATS_PASSWORD` and
    `AUTOPAY_REDIS_USER`/`AUTOPAY_REDIS_PASSWORD` (an empty Redis user is the default user)."""

    model_config = SettingsConfigDict(env_prefix="AUTOPAY_", extra="ignore")

    nats_url: str = Field("nats://127.0.0.1:4222", repr=False)
    redis_url: str = Field("redis://127.0.0.1:6379/0", repr=False)
    nats_user: str = ""
    nats_password: str = Field("", repr=False)
    redis_user: str = ""
    redis_password: str = Field("", repr=False)
    namespace: str = "autopay"
    redis_prefix: str = "ap"
    redis_cluster: bool = False
    """Redis is a Cluster (also said by a `redis+cluster://` URL, which this then becomes)."""
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    log_level: str = "INFO"
    log_json: bool = True
    secret_keys: SecretStr = Field(
        SecretStr(""), description="Fernet keys (comma-separated; first encrypts)"
    )
    """The keys that encrypt stored secrets (Gmail App Passwords, webhook secrets, bot keys)."""
    trace_file: str = ""
    """Where finished spans are appended as OTLP JSON lines (`AUTOPAY_TRACE_FILE`); empty: no
    file. The standard `OTEL_*` variables configure the rest of tracing."""

    @model_validator(mode="after")
    def _credentials_into_urls(self):
        self.nats_url = url_with_credentials(self.nats_url, self.nats_user, self.nats_password)
        self.redis_url = url_with_credentials(self.redis_url, self.redis_user, self.redis_password)
        self.redis_url = cluster_url(self.redis_url) if self.redis_cluster else self.redis_url
        self.redis_cluster = is_cluster_url(self.redis_url)
        return self

    @property
    def nats_connect_options(self) -> dict[str, Any]:
        """`nats_url` as `nats.connect(**options)` takes it (`nats_connect_options`)."""
        return nats_connect_options(self.nats_url)

    @property
    def ns(self) -> Namespace:
        return Namespace(self.namespace)
