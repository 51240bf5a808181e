"""A real local IMAP server (pymap, in-memory), for tests and the dev stack's demo mailbox.

`ImapServer` runs pymap's IMAP service in the current event loop on a free port, with IDLE,
APPEND and UIDPLUS, users with 1-round password hashing (logins are instant), a way to drop
every client connection (to test reconnects) and an optional implicit-TLS front (IMAPS, like
Gmail's port 993) that proxies to the plaintext server.

    async with ImapServer({"shop@gmail.com": "app-pass"}) as server:
        await server.append("shop@gmail.com", raw_bytes)

Run it as a process (the dev stack's demo mailbox server):

    python -m autopay_testing.imap --host 127.0.0.1 --port 10143 --user shop@gmail.com:secret
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import contextvars
import datetime as dt
import ipaddress
import json
import signal
import ssl
import uuid
from argparse import Namespace
from dataclasses import dataclass
from pathlib import Path

import aioimaplib
import uvloop
from proxyprotocol.sock import SocketInfoLocal
from pymap.backend.dict import Config, Identity, Login
from pymap.concurrent import Subsystem
from pymap.imap import IMAPServer
from pymap.user import UserMetadata
from pysasl.creds.server import ServerCredentials
from pysasl.hashing import BuiltinHash

from autopay_testing.compat.pymap import announce_pending_mail_on_idle

# --- TLS ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsCert:
    """A certificate and its key as PEM files."""

    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts exactly this certificate (full verification)."""
        return ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.cert_file))


def make_self_signed_cert(
    directory: Path, names: tuple[str, ...] = ("localhost", "127.0.0.1"), days: int = 30
) -> TlsCert:
    """Write `cert.pem` and `key.pem` (EC P-256) valid for `names` (DNS names or IPs)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_file.chmod(0o600)
    return TlsCert(cert_file, key_file)


# --- server -------------------------------------------------------------------------------


@dataclass(eq=False)
class _Session:
    user: str | None = None


_session: contextvars.ContextVar[_Session | None] = contextvars.ContextVar(
    "imap_session", default=None
)


class _Login(Login):
    """pymap's dict login; with `any_user_password`, an unknown user is created on first login
    with that password (the dev stack's demo server accepts every card's mailbox). Records the
    logged-in user on the connection's session (for `ImapServer.sessions_by_user`)."""

    any_user_password: str | None = None

    async def authenticate(self, credentials: ServerCredentials) -> Identity:
        name = credentials.authcid
        if self.any_user_password is not None and name not in self.users_dict:
            hashed = await self._passwords.hash_password(self.any_user_password)
            self.users_dict[name] = UserMetadata(self.config, name, password=hashed)
        identity = await super().authenticate(credentials)
        if (session := _session.get()) is not None:
            session.user = name
        return identity


def _pymap_args(host: str, port: int) -> Namespace:
    return Namespace(
        host=host,
        port=port,
        debug=False,
        cert=None,
        key=None,
        tls=False,
        passlib_cfg=None,
        proxy_protocol=None,
        inherited_sockets=None,
        demo_data=False,
        demo_user="demouser",
        demo_password="demopass",  # noqa: S106 - pymap requires one; no demo user is used
    )


class ImapServer:
    """pymap (dict backend) listening on `host:port`; with `tls_cert`, `port` is implicit TLS.

    `port=0` picks a free port. `plain_port` is always the plaintext IMAP listener (the same
    as `port` without TLS).
    """

    def __init__(
        self,
        users: dict[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        tls_cert: TlsCert | None = None,
        any_user_password: str | None = None,
    ) -> None:
        self.host = host
        self.any_user_password = any_user_password
        self._requested_port = port
        self._initial_users = dict(users or {})
        self._passwords: dict[str, str] = {}
        self.tls_cert = tls_cert
        self._login: Login | None = None
        self._config: Config | None = None
        self._servers: list[asyncio.Server] = []
        self._connections: set[asyncio.StreamWriter] = set()
        self._sessions: set[_Session] = set()
        self._tasks: set[asyncio.Task] = set()
        self.port = 0
        self.plain_port = 0
        self.connections_accepted = 0
        """Plaintext connections accepted so far (TLS clients count once, via the front)."""

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    async def start(self) -> ImapServer:
        announce_pending_mail_on_idle()
        config = Config.from_args(
            _pymap_args(self.host, 0),
            invalid_user_sleep=0.0,
            reject_dnsbl=False,
            hash_context=BuiltinHash(rounds=1),
            cpu_subsystem=Subsystem.for_asyncio(),
        )
        config.apply_context()
        login = _Login(config)
        login.any_user_password = self.any_user_password
        self._login, self._config = login, config
        for user, password in self._initial_users.items():
            await self.add_user(user, password)
        imap = IMAPServer(login, config)

        async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections_accepted += 1
            self._connections.add(writer)
            session = _Session()
            self._sessions.add(session)
            _session.set(session)
            try:
                await imap(reader, writer, SocketInfoLocal(writer, unique_id=uuid.uuid4().bytes))
            except (ConnectionError, EOFError, asyncio.IncompleteReadError):
                pass
            finally:
                self._connections.discard(writer)
                self._sessions.discard(session)

        plain_port = 0 if self.tls else self._requested_port
        plain = await asyncio.start_server(on_client, self.host, plain_port)
        self._servers.append(plain)
        self.plain_port = plain.sockets[0].getsockname()[1]
        self.port = self.plain_port
        if self.tls_cert is not None:
            front = await asyncio.start_server(
                self._proxy_tls_client,
                self.host,
                self._requested_port,
                ssl=self.tls_cert.server_context(),
            )
            self._servers.append(front)
            self.port = front.sockets[0].getsockname()[1]
        return self

    async def _proxy_tls_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._connections.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.plain_port)
        except OSError:
            self._connections.discard(writer)
            writer.close()
            return

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    dst.close()

        try:
            await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        finally:
            self._connections.discard(writer)

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        await self.disconnect_all()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2.0)
        self._servers.clear()

    async def __aenter__(self) -> ImapServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def add_user(self, user: str, password: str) -> None:
        """Create the user, or replace its password."""
        assert self._login is not None and self._config is not None, "server not started"
        hashed = await self._login._passwords.hash_password(password)
        self._passwords[user] = password
        self._login.users_dict[user] = UserMetadata(self._config, user, password=hashed)

    async def disconnect_all(self) -> int:
        """Drop every client connection at once (like a server restart); returns how many."""
        writers = list(self._connections)
        for writer in writers:
            writer.transport.abort()
        self._connections.clear()
        await asyncio.sleep(0)
        return len(writers)

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    def sessions_by_user(self) -> collections.Counter[str]:
        """Open, logged-in connections per user (who watches which mailbox, seen server-side)."""
        return collections.Counter(s.user for s in self._sessions if s.user is not None)

    def client(self, timeout: float = 10.0) -> aioimaplib.IMAP4:
        """A new aioimaplib client for this server (TLS when the server is TLS)."""
        if self.tls_cert is not None:
            return aioimaplib.IMAP4_SSL(
                self.host, self.port, timeout=timeout, ssl_context=self.tls_cert.client_context()
            )
        return aioimaplib.IMAP4(self.host, self.port, timeout=timeout)

    async def append(
        self, user: str, raw: bytes, mailbox: str = "INBOX", password: str | None = None
    ) -> int | None:
        """APPEND `raw` as `user` over a real IMAP connection; returns the new UID (APPENDUID)."""
        if password is None:
            password = self._passwords.get(user) or self.any_user_password
        if password is None:
            raise KeyError(f"unknown password for {user}; pass password=")
        return await append_over_imap(
            self.host, self.plain_port, user, password, raw, mailbox=mailbox
        )


async def append_over_imap(
    host: str,
    port: int,
    user: str,
    password: str,
    raw: bytes,
    mailbox: str = "INBOX",
    ssl_context: ssl.SSLContext | None = None,
    command_timeout: float = 10.0,
) -> int | None:
    """Log in, APPEND one message, log out; returns the new UID when the server says it."""
    if ssl_context is not None:
        client: aioimaplib.IMAP4 = aioimaplib.IMAP4_SSL(
            host, port, timeout=command_timeout, ssl_context=ssl_context
        )
    else:
        client = aioimaplib.IMAP4(host, port, timeout=command_timeout)
    await client.wait_hello_from_server()
    try:
        response = await client.login(user, password)
        if response.result != "OK":
            raise PermissionError(f"IMAP login failed for {user}")
        response = await client.append(raw, mailbox=mailbox)
        if response.result != "OK":
            raise RuntimeError(f"IMAP APPEND failed: {response.result}")
        for line in response.lines:
            text = bytes(line).decode(errors="replace")
            if "APPENDUID" in text:
                return int(text.split("APPENDUID", 1)[1].split()[1].rstrip("]"))
        return None
    finally:
        with contextlib.suppress(Exception):
            await client.logout()


# --- process entry point ------------------------------------------------------------------


def _parse_user(value: str) -> tuple[str, str]:
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise argparse.ArgumentTypeError("expected ADDRESS:PASSWORD")
    return user, password


async def _serve(args: argparse.Namespace) -> None:
    tls_cert = TlsCert(Path(args.tls_cert), Path(args.tls_key)) if args.tls_cert else None
    server = ImapServer(
        dict(args.user), args.host, args.port, tls_cert, any_user_password=args.any_user_password
    )
    async with server:
        print(
            json.dumps(
                {
                    "host": server.host,
                    "port": server.port,
                    "plain_port": server.plain_port,
                    "tls": server.tls,
                }
            ),
            flush=True,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if args.passwords_file:
            path = Path(args.passwords_file)

            reloads: set[asyncio.Task] = set()

            def reload_passwords() -> None:
                passwords = _read_passwords(path)
                task = loop.create_task(_apply_passwords(server, passwords))
                reloads.add(task)
                task.add_done_callback(reloads.discard)

            loop.add_signal_handler(signal.SIGUSR1, reload_passwords)
        await stop.wait()


def _read_passwords(path: Path) -> dict[str, str]:
    try:
        return {str(k): str(v) for k, v in json.loads(path.read_text()).items()}
    except (OSError, ValueError, AttributeError):
        return {}


async def _apply_passwords(server: ImapServer, passwords: dict[str, str]) -> None:
    """SIGUSR1: set the passwords of `--passwords-file` (JSON `{address: password}`) and drop
    every connection, so clients log in again with what they hold (a password that "stops
    working", as when the owner revokes a Gmail App Password)."""
    for user, password in passwords.items():
        await server.add_user(user, password)
    await server.disconnect_all()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m autopay_testing.imap", description="Local IMAP server (pymap, IDLE)."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--user", type=_parse_user, action="append", default=[])
    parser.add_argument(
        "--any-user-password", help="accept any address with this password (demo server)"
    )
    parser.add_argument(
        "--passwords-file", help="JSON {address: password} applied on SIGUSR1 (then reconnects)"
    )
    parser.add_argument("--tls-cert", help="PEM certificate: --port then speaks implicit TLS")
    parser.add_argument("--tls-key", help="PEM key for --tls-cert")
    args = parser.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    # uvloop, as every service runs: under load this process stands in for Gmail, and its
    # own event loop's cost should not count against the stack it serves.
    uvloop.run(_serve(args))


if __name__ == "__main__":
    main()
