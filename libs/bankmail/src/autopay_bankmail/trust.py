"""Trust policy: who may tell us that money arrived into this mailbox.

Anyone can mail the merchant's Gmail with any headers and any envelope sender, and anyone can
obtain a genuine, DKIM-signed bank notification for their own card and re-send it unchanged.
So a bank e-mail counts only when all of this holds:

1. The **topmost** `Authentication-Results` header was written by the trusted receiver (default
   `mx.google.com`; the receiver prepends its own, anything below was written by the sender) and
   tokenizes cleanly (`authres.parse`; an ambiguous header is not trusted).
2. `From` is exactly one address, the bank's own, read the same by a strict and a lenient parser;
   the receiver shows a `dkim=pass` whose signing domain (`header.d`, else the domain of
   `header.i`) has the same organizational domain as that address (public suffix list). SPF
   alone never suffices: the envelope sender proves nothing about `From`. A `dmarc=` result, when
   present (or always, for a bank that requires it), must be `pass` for that domain.
3. The notification is addressed to this mailbox: the one `To` header names the mailbox, or an
   alias its owner declared, after Gmail normalization. A genuine notification for someone
   else's card, re-sent here, is `replayed`.

A forwarded SMS / bot text counts only when the mailbox accepts forwarders, the mail comes from
the mailbox's own address (normalized), rules 1-2 hold for that address's domain, and the
forwarder names the bank's SMS sender (a customer can text the merchant's phone too).

Every refusal carries a code from `autopay_contracts.REFUSALS` and a human detail.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from email import policy
from email.utils import getaddresses
from functools import lru_cache

from publicsuffixlist import PublicSuffixList

from autopay_bankmail import authres
from autopay_bankmail.envelope import Envelope
from autopay_contracts import normalize_gmail

TRUSTED_RECEIVER = "mx.google.com"


@dataclass(frozen=True)
class BankSender:
    """A bank's notification address. `dmarc_required`: refuse unless the receiver shows
    `dmarc=pass` (for banks known to publish a DMARC policy)."""

    address: str
    dmarc_required: bool = False


BANK_SENDERS: dict[str, BankSender] = {
    "noreply@info.uzcard.uz": BankSender("noreply@info.uzcard.uz"),
}
"""Exact bank From address → its policy."""


@dataclass(frozen=True)
class Verdict:
    trusted: bool
    refusal: str | None = None
    detail: str | None = None

    @property
    def reason(self) -> str | None:
        """`<refusal>: <detail>`, as `parse-mail`, events and the ledger show it."""
        if self.trusted:
            return None
        return f"{self.refusal}: {self.detail}" if self.detail else self.refusal


TRUSTED = Verdict(True)


def refuse(refusal: str, detail: str) -> Verdict:
    return Verdict(False, refusal, detail)


# --- domains ------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _suffixes() -> PublicSuffixList:
    return PublicSuffixList()


@lru_cache(maxsize=4096)
def organizational_domain(domain: str) -> str | None:
    """The registrable domain (`info.uzcard.uz` → `uzcard.uz`), None for a public suffix."""
    return _suffixes().privatesuffix(domain.lower())


def aligned(signing_domain: str, from_domain: str) -> bool:
    """Relaxed alignment: both have the same organizational domain."""
    org = organizational_domain(from_domain)
    return org is not None and organizational_domain(signing_domain) == org


def signing_domain(result: authres.ResultInfo) -> str | None:
    """The domain a DKIM result vouches for: `header.d`, else the domain of `header.i`; None
    when neither is a real domain token, or when `header.i` lies outside `header.d`."""
    d = result.get("header", "d")
    i = result.get("header", "i")
    sdid = d.domain if d is not None and d.local_part is None else None
    auid = i.domain if i is not None and i.local_part is not None else None
    if d is not None:
        if sdid is None:
            return None
        if i is not None and (auid is None or not (auid == sdid or auid.endswith("." + sdid))):
            return None
        return sdid
    return auid


# --- the receiver's verdict ---------------------------------------------------------------


def receiver_verdict(
    auth_headers: Sequence[str],
    from_domain: str,
    trusted_receiver: str,
    *,
    dmarc_required: bool = False,
) -> Verdict:
    """Rules 1-2 for a mail whose single `From` is in `from_domain`."""
    if not auth_headers:
        return refuse("unauthenticated", "no Authentication-Results header")
    top = authres.parse(auth_headers[0])
    if isinstance(top, authres.Malformed):
        return refuse("malformed_auth", f"topmost Authentication-Results: {top.reason}")
    if top.authserv_id != trusted_receiver.lower():
        return refuse(
            "untrusted_receiver",
            f"topmost Authentication-Results is by {top.authserv_id!r}, not {trusted_receiver!r}",
        )
    dkim = [r for r in top.results if r.method == "dkim"]
    passed = [r for r in dkim if r.result == "pass"]
    if not passed:
        if any(r.method == "spf" and r.result == "pass" for r in top.results):
            return refuse("spf_only", "SPF passed but no DKIM signature did")
        results = ", ".join(f"dkim={r.result}" for r in dkim) or "no dkim result"
        return refuse("forged", f"{trusted_receiver} shows {results}")
    domains = [signing_domain(r) for r in passed]
    if not any(d is not None and aligned(d, from_domain) for d in domains):
        named = ", ".join(sorted({d for d in domains if d})) or "no signing domain"
        return refuse("misaligned", f"DKIM passed for {named}, not for {from_domain}")
    dmarc = [r for r in top.results if r.method == "dmarc"]
    for result in dmarc:
        if result.result != "pass":
            return refuse("dmarc_fail", f"dmarc={result.result}")
        header_from = result.get("header", "from")
        if header_from is not None and header_from.text.lower() != from_domain.lower():
            return refuse("dmarc_fail", f"dmarc passed for {header_from.text}, not {from_domain}")
    if dmarc_required and not dmarc:
        return refuse("dmarc_fail", "this bank requires dmarc=pass and none was shown")
    return TRUSTED


# --- addresses ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Addresses:
    specs: tuple[tuple[str, str], ...] = ()
    problem: str | None = None


def _read_addresses(name: str, values: Sequence[str]) -> _Addresses:
    """One header's addresses as (local part, domain), lowercased, read by the strict parser
    and checked against the lenient one; a header either parser reads differently, or the
    strict one finds defects in, is refused."""
    if len(values) != 1:
        return _Addresses(problem=f"{len(values)} {name} headers")
    try:
        header = policy.default.header_factory(name, values[0])
        strict = [(a.username, a.domain, a.addr_spec) for a in header.addresses]
        defects = header.defects
        lenient = [addr for _, addr in getaddresses([values[0]]) if addr]
    except Exception as exc:
        return _Addresses(problem=f"{name} unreadable: {type(exc).__name__}")
    if defects:
        return _Addresses(problem=f"{name} is malformed")
    if [spec.lower() for *_, spec in strict] != [addr.lower() for addr in lenient]:
        return _Addresses(problem=f"{name} reads differently to different parsers")
    return _Addresses(specs=tuple((user.lower(), domain.lower()) for user, domain, _ in strict))


def _single_sender(env: Envelope) -> tuple[str, str] | Verdict:
    found = _read_addresses("From", env.from_headers)
    if found.problem is not None:
        refusal = "multiple_from" if found.problem.endswith("From headers") else "malformed_from"
        return refuse(refusal, found.problem)
    if len(found.specs) != 1:
        return refuse("multiple_from", f"From names {len(found.specs)} addresses")
    return found.specs[0]


def _spec(local: str, domain: str) -> str:
    return f"{local}@{domain}"


def addressed_to(env: Envelope, mailbox: str, aliases: Iterable[str] = ()) -> Verdict:
    """Rule 3: the one `To` header names the mailbox or one of its aliases (normalized)."""
    wanted = {normalize_gmail(mailbox), *(normalize_gmail(a) for a in aliases)}
    found = _read_addresses("To", env.to_headers)
    if found.problem is not None:
        return refuse("replayed", found.problem)
    named = {normalize_gmail(_spec(*spec)) for spec in found.specs if "@" not in spec[0]}
    if named & wanted:
        return TRUSTED
    return refuse("replayed", "addressed to another mailbox")


# --- the two channels ---------------------------------------------------------------------


def is_bank_sender(env: Envelope) -> bool:
    """Whether `From` claims to be a bank (which channel's rules apply)."""
    return any(address in BANK_SENDERS for address in env.from_addresses)


def assess_bank_email(
    env: Envelope,
    *,
    mailbox: str | None,
    aliases: Iterable[str] = (),
    trusted_receiver: str = TRUSTED_RECEIVER,
) -> Verdict:
    sender = _single_sender(env)
    if isinstance(sender, Verdict):
        return sender
    bank = BANK_SENDERS.get(_spec(*sender))
    if bank is None or "@" in sender[0]:
        return refuse("not_bank_sender", f"From {_spec(*sender)} is not a bank sender address")
    verdict = receiver_verdict(
        env.auth_results, sender[1], trusted_receiver, dmarc_required=bank.dmarc_required
    )
    if not verdict.trusted:
        return verdict
    if not mailbox:
        return refuse("mailbox_unknown", "the reading mailbox is unknown")
    return addressed_to(env, mailbox, aliases)


def _sender_id(name: str) -> str:
    return "".join(c for c in name if not (c.isspace() or c in "@_-")).lower()


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
        return refuse("forwarder_disabled", "this mailbox does not accept forwarded texts")
    if not mailbox:
        return refuse("mailbox_unknown", "the reading mailbox is unknown")
    sender = _single_sender(env)
    if isinstance(sender, Verdict):
        return sender
    own = normalize_gmail(mailbox)
    if "@" in sender[0] or normalize_gmail(_spec(*sender)) != own:
        return refuse("forwarder_foreign", "forwarded from an address other than the mailbox's")
    if sms_senders is not None:
        if not env.sms_senders:
            return refuse("forwarder_sender", "the forwarder does not name the SMS sender")
        for named in env.sms_senders:
            if _sender_id(named) not in sms_senders:
                return refuse("forwarder_sender", f"SMS sender {named!r} is not the bank's")
    return receiver_verdict(env.auth_results, sender[1], trusted_receiver)
