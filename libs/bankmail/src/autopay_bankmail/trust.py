"""Trust policy (SPEC §4): who may tell us that money arrived.

* A bank e-mail counts only when `From` is exactly one address, the bank's own, AND the topmost
  `Authentication-Results` header was written by the trusted receiver (default `mx.google.com`)
  and shows `dkim=pass` (or `spf=pass`) for the bank's domain. The receiver prepends its header,
  so anything below it was written by whoever sent the mail and proves nothing; a topmost header
  by anyone else means the receiver's verdict is missing, which is also a refusal.
* A forwarded SMS / bot text counts only when the mailbox enables forwarders, the mail comes
  from the mailbox's own address with a passing verdict for the mailbox's domain, and the
  forwarder names the bank's SMS sender (a customer can text the merchant's phone too).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from autopay_bankmail.envelope import Envelope

TRUSTED_RECEIVER = "mx.google.com"

BANK_SENDERS: dict[str, frozenset[str]] = {
    "noreply@info.uzcard.uz": frozenset({"info.uzcard.uz", "uzcard.uz"}),
}
"""Exact bank From address → the domains whose DKIM/SPF pass vouches for it."""


@dataclass(frozen=True)
class Verdict:
    trusted: bool
    reason: str | None = None


TRUSTED = Verdict(True)


@dataclass(frozen=True)
class AuthResult:
    method: str
    result: str
    props: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AuthenticationResults:
    authserv_id: str
    results: tuple[AuthResult, ...]


_PAIR = re.compile(
    r"(?<![A-Za-z0-9_.\-/])([A-Za-z0-9_.\-/]++)\s*+=\s*+(\"(?:[^\"\\]|\\.)*+\"|[^\s;\"]++)"
)


def _strip_comments(value: str) -> str:
    """Remove RFC 5322 comments (nested, with escapes), keeping quoted strings intact."""
    out: list[str] = []
    depth = 0
    quoted = False
    escaped = False
    for char in value:
        if escaped:
            escaped = False
            if depth == 0:
                out.append(char)
            continue
        if char == "\\":
            escaped = True
            if depth == 0:
                out.append(char)
            continue
        if quoted:
            out.append(char)
            if char == '"':
                quoted = False
            continue
        if char == "(":
            depth += 1
        elif char == ")" and depth:
            depth -= 1
        elif depth == 0:
            if char == '"':
                quoted = True
            out.append(char)
    return "".join(out)


def _split_statements(value: str) -> list[str]:
    """Split on `;` outside quoted strings."""
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in value:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == ";" and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def parse_authentication_results(value: str) -> AuthenticationResults | None:
    """RFC 8601 header value → authserv-id and its method results; None if malformed."""
    parts = [p.strip() for p in _split_statements(_strip_comments(value))]
    head = parts[0].split()
    if not head:
        return None
    results: list[AuthResult] = []
    for part in parts[1:]:
        pairs = _PAIR.findall(part)
        if not pairs:
            continue
        method, result = pairs[0]
        props = {key.lower(): val.strip('"') for key, val in pairs[1:]}
        results.append(AuthResult(method.split("/")[0].lower(), result.lower(), props))
    return AuthenticationResults(head[0].lower(), tuple(results))


def _domain(identity: str) -> str:
    return identity.rsplit("@", 1)[-1].strip().strip(".").lower()


def _vouches_for(result: AuthResult, domains: frozenset[str]) -> bool:
    if result.result != "pass":
        return False
    if result.method == "dkim":
        ids = [result.props.get("header.d", ""), result.props.get("header.i", "")]
        ids = [_domain(i) for i in ids if i]
        return bool(ids) and all(i in domains for i in ids)
    if result.method == "spf":
        mailfrom = result.props.get("smtp.mailfrom", "")
        return bool(mailfrom) and _domain(mailfrom) in domains
    return False


def receiver_verdict(
    auth_headers: Iterable[str], domains: frozenset[str], trusted_receiver: str
) -> Verdict:
    """Does the topmost Authentication-Results header, by the trusted receiver, show a DKIM or
    SPF pass for one of `domains`?"""
    headers = list(auth_headers)
    wanted = " or ".join(sorted(domains))
    if not headers:
        return Verdict(False, "no Authentication-Results header from the receiving server")
    top = parse_authentication_results(headers[0])
    if top is None:
        return Verdict(False, "topmost Authentication-Results header is malformed")
    if top.authserv_id != trusted_receiver.lower():
        return Verdict(
            False,
            f"topmost Authentication-Results header is by {top.authserv_id!r}, "
            f"not the trusted receiver {trusted_receiver!r}",
        )
    if any(_vouches_for(r, domains) for r in top.results):
        return TRUSTED
    return Verdict(False, f"{trusted_receiver} shows no dkim=pass or spf=pass for {wanted}")


def assess_bank_email(env: Envelope, *, trusted_receiver: str = TRUSTED_RECEIVER) -> Verdict:
    if len(env.from_addresses) != 1:
        return Verdict(False, f"From must name exactly one address, got {len(env.from_addresses)}")
    sender = env.from_addresses[0]
    domains = BANK_SENDERS.get(sender)
    if domains is None:
        return Verdict(False, f"From {sender} is not a bank sender address")
    return receiver_verdict(env.auth_results, domains, trusted_receiver)


def normalize_mailbox(address: str) -> str:
    """Canonical form of a mailbox address (Gmail ignores dots and `+tags`)."""
    address = address.strip().lower()
    local, _, domain = address.rpartition("@")
    if domain in {"gmail.com", "googlemail.com"} and local:
        local = local.split("+", 1)[0].replace(".", "")
        domain = "gmail.com"
    return f"{local}@{domain}" if local else address


def _sender_id(name: str) -> str:
    return re.sub(r"[\s@_\-]", "", name).lower()


def assess_forwarded(
    env: Envelope,
    *,
    mailbox: str | None,
    allow_forwarded: bool,
    sms_senders: frozenset[str] | None,
    trusted_receiver: str = TRUSTED_RECEIVER,
) -> Verdict:
    """`sms_senders`: the bank's SMS sender ids for this format (None: any sender)."""
    if not allow_forwarded:
        return Verdict(False, "forwarded notifications are not enabled for this mailbox")
    if not mailbox:
        return Verdict(False, "mailbox address unknown, cannot check a forwarded notification")
    if len(env.from_addresses) != 1:
        return Verdict(False, f"From must name exactly one address, got {len(env.from_addresses)}")
    sender = env.from_addresses[0]
    if normalize_mailbox(sender) != normalize_mailbox(mailbox):
        return Verdict(False, f"forwarded from {sender}, not the mailbox's own address")
    if sms_senders is not None:
        if not env.sms_senders:
            return Verdict(False, "the forwarder does not name the SMS sender")
        for named in env.sms_senders:
            if _sender_id(named) not in sms_senders:
                return Verdict(False, f"SMS sender {named!r} is not the bank's")
    domain = _domain(normalize_mailbox(mailbox))
    return receiver_verdict(env.auth_results, frozenset({domain}), trusted_receiver)
