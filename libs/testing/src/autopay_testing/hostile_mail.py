"""Mail an attacker can put into a merchant's inbox, and genuine mail that must still pass.

Every case is built from a realistic bank notification (`autopay_bankmail.synth`) for the given
mailbox, card, amount and bank time, with the headers an attacker controls rewritten. The
topmost `Authentication-Results` header stands for what the receiving server (mx.google.com)
would write for that mail, since the receiver always prepends its own verdict.

Used by the parser tests (`libs/bankmail/tests/test_trust.py`) and by the live mail-ingest
test (`services/mail-ingest/tests/test_screening.py`), so both check the same attacks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from autopay_bankmail.synth import BANK_ADDRESS, uzcard_credit_email, uzcard_credit_sms

RECEIVER = "mx.google.com"
BANK_DOMAIN = BANK_ADDRESS.rpartition("@")[2]
SPF_COMMENT = "(google.com: domain of {sender} designates 203.0.113.7 as permitted sender)"


def gmail_verdict(*clauses: str) -> str:
    """An Authentication-Results value as mx.google.com writes it."""
    return f"{RECEIVER}; " + "; ".join(clauses)


def spf(result: str, sender: str) -> str:
    return f"spf={result} {SPF_COMMENT.format(sender=sender)} smtp.mailfrom={sender}"


GENUINE_BANK_AUTH = gmail_verdict(
    f"dkim=pass header.i=@{BANK_DOMAIN} header.s=mail header.b=Qm/9+xZa",
    spf("pass", f"bounce@{BANK_DOMAIN}"),
    f"dmarc=pass (p=NONE sp=NONE dis=NONE) header.from={BANK_DOMAIN}",
)


def rewrite_headers(
    raw: bytes,
    *,
    auth: list[str] | None = None,
    from_: list[str] | None = None,
    to: list[str] | None = None,
    on_top: list[str] | None = None,
) -> bytes:
    """`raw` with its Authentication-Results (topmost first), From or To headers replaced
    (None: kept), and `on_top` header lines put above everything."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    replaced = {
        name: values
        for name, values in (
            (b"authentication-results", auth),
            (b"from", from_),
            (b"to", to),
        )
        if values is not None
    }
    kept: list[bytes] = []
    current: bytes | None = None
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            if current not in replaced:
                kept.append(line)
            continue
        current = line.split(b":", 1)[0].strip().lower()
        if current not in replaced:
            kept.append(line)
    added = [
        f"Authentication-Results: {v}".encode() for v in replaced.get(b"authentication-results", [])
    ]
    added += [f"From: {v}".encode() for v in replaced.get(b"from", [])]
    added += [f"To: {v}".encode() for v in replaced.get(b"to", [])]
    top = [line.encode() for line in on_top or []]
    return b"\r\n".join(top + added + kept) + sep + body


@dataclass(frozen=True)
class MailCase:
    name: str
    attack: str
    """The attack class, in the words of the threat model (or `genuine`)."""
    raw: bytes
    refusal: str | None
    """The expected refusal; None for genuine mail (a credit)."""
    candidate: bool = True
    """Whether its headers make it a candidate: a non-candidate is never read at all."""
    aliases: tuple[str, ...] = ()
    allow_forwarded: bool = False


def bank_credit(mailbox: str, card_last4: str, amount_tiyin: int, occurred_at: datetime) -> bytes:
    """A genuine Uzcard notification to `mailbox`, with mx.google.com's verdict on top."""
    raw = uzcard_credit_email(
        to=mailbox, amount_tiyin=amount_tiyin, card_last4=card_last4, occurred_at=occurred_at
    )
    return rewrite_headers(raw, auth=[GENUINE_BANK_AUTH])


def hostile_cases(
    mailbox: str, card_last4: str, amount_tiyin: int, occurred_at: datetime
) -> list[MailCase]:
    """Every attack class, each one a mail that must never become a credit in `mailbox`."""
    genuine = bank_credit(mailbox, card_last4, amount_tiyin, occurred_at)
    bank_from = [f"UZCARD <{BANK_ADDRESS}>"]
    evil = "evil.example"

    def forged(name: str, attack: str, refusal: str, auth: list[str], **kw) -> MailCase:
        return MailCase(name, attack, rewrite_headers(genuine, auth=auth, **kw), refusal)

    spoofed_sender = f'"x@{BANK_DOMAIN}"@{evil}'
    injected = f'"a); dkim=pass header.d={BANK_DOMAIN} (b"@{evil}'
    cases = [
        forged(
            "quoted-local-part-header-i",
            "bank domain in a quoted local part",
            "misaligned",
            [gmail_verdict(f"dkim=pass header.i={spoofed_sender}", spf("pass", f"b@{evil}"))],
        ),
        forged(
            "quoted-local-part-mailfrom",
            "bank domain in a quoted local part",
            "malformed_auth",
            [gmail_verdict("dkim=none", spf("pass", spoofed_sender))],
        ),
        forged(
            "comment-injection-envelope-sender",
            "comment injection through the envelope sender",
            "malformed_auth",
            [gmail_verdict("dkim=none", spf("pass", injected))],
        ),
        forged(
            "spf-only",
            "SPF without DKIM",
            "spf_only",
            [gmail_verdict("dkim=none", spf("pass", f"bounce@{BANK_DOMAIN}"))],
        ),
        forged(
            "dmarc-fail",
            "dmarc=fail",
            "dmarc_fail",
            [
                gmail_verdict(
                    f"dkim=pass header.i=@{BANK_DOMAIN}",
                    spf("fail", f"x@{evil}"),
                    f"dmarc=fail (p=NONE sp=NONE dis=NONE) header.from={BANK_DOMAIN}",
                )
            ],
        ),
        forged(
            "misaligned-signature",
            "misaligned DKIM domain",
            "misaligned",
            [gmail_verdict(f"dkim=pass header.i=@{evil} header.s=s1", spf("pass", f"a@{evil}"))],
        ),
        forged(
            "suffix-lookalike-domain",
            "suffix lookalike domain",
            "misaligned",
            [gmail_verdict(f"dkim=pass header.d={BANK_DOMAIN}.{evil}")],
        ),
        forged(
            "prefix-lookalike-domain",
            "prefix lookalike domain",
            "misaligned",
            [gmail_verdict("dkim=pass header.d=evil-uzcard.uz header.i=@evil-uzcard.uz")],
        ),
        forged(
            "glued-lookalike-domain",
            "prefix lookalike domain",
            "misaligned",
            [gmail_verdict("dkim=pass header.d=xuzcard.uz")],
        ),
        forged(
            "lookalike-authserv-id",
            "lookalike authserv-id",
            "untrusted_receiver",
            [
                f"{RECEIVER}.{evil}; dkim=pass header.i=@{BANK_DOMAIN}",
                GENUINE_BANK_AUTH,
            ],
        ),
        forged(
            "sender-written-verdict-below",
            "a verdict written by the sender",
            "forged",
            [gmail_verdict(f"dkim=fail header.i=@{BANK_DOMAIN}"), GENUINE_BANK_AUTH],
        ),
        forged("no-verdict", "no verdict at all", "unauthenticated", []),
        MailCase(
            "display-name-spoof",
            "display-name From spoof",
            rewrite_headers(
                genuine,
                auth=[gmail_verdict(f"dkim=pass header.i=@{evil}")],
                from_=[f'"{BANK_ADDRESS}" <alerts@{evil}>'],
            ),
            "not_bank_sender",
            candidate=False,
        ),
        MailCase(
            "lookalike-sender-domain",
            "suffix lookalike domain",
            rewrite_headers(
                genuine,
                auth=[gmail_verdict("dkim=pass header.i=@info-uzcard.example")],
                from_=["UZCARD <noreply@info-uzcard.example>"],
            ),
            "not_bank_sender",
            candidate=False,
        ),
        MailCase(
            "double-from",
            "double From",
            rewrite_headers(genuine, from_=[*bank_from, f"alerts@{evil}"]),
            "multiple_from",
        ),
        MailCase(
            "from-read-two-ways",
            "display-name From spoof",
            rewrite_headers(genuine, from_=[f"{BANK_ADDRESS} <alerts@{evil}>"]),
            "malformed_from",
        ),
        MailCase(
            "replayed-to-another-mailbox",
            "a genuine notification replayed to another mailbox",
            bank_credit("attacker.own@gmail.com", card_last4, amount_tiyin, occurred_at),
            "replayed",
        ),
        MailCase(
            "replayed-with-added-to",
            "a genuine notification replayed to another mailbox",
            rewrite_headers(
                bank_credit("attacker.own@gmail.com", card_last4, amount_tiyin, occurred_at),
                on_top=[f"To: {mailbox}"],
            ),
            "replayed",
        ),
    ]
    sms = uzcard_credit_sms(
        to=mailbox, amount_tiyin=amount_tiyin, card_last4=card_last4, occurred_at=occurred_at
    )
    own_domain = mailbox.rpartition("@")[2]
    cases += [
        MailCase(
            "spoofed-forwarder-unsigned",
            "a spoofed forwarder",
            rewrite_headers(sms, auth=[gmail_verdict("dkim=none", spf("pass", f"x@{evil}"))]),
            "spf_only",
            allow_forwarded=True,
        ),
        MailCase(
            "spoofed-forwarder-foreign-signature",
            "a spoofed forwarder",
            rewrite_headers(sms, auth=[gmail_verdict(f"dkim=pass header.i=@{evil}")]),
            "misaligned",
            allow_forwarded=True,
        ),
        MailCase(
            "forwarder-from-another-gmail",
            "a spoofed forwarder",
            rewrite_headers(
                sms,
                auth=[gmail_verdict(f"dkim=pass header.i=@{own_domain}")],
                from_=['"UZCARD" <stranger.shop@gmail.com>'],
            ),
            "forwarder_foreign",
            candidate=False,
            allow_forwarded=True,
        ),
        MailCase(
            "forwarder-when-disabled",
            "a spoofed forwarder",
            sms,
            "forwarder_disabled",
            candidate=False,
        ),
    ]
    return cases


def _spellings(mailbox: str) -> list[tuple[str, str]]:
    local, _, domain = mailbox.partition("@")
    if domain != "gmail.com":
        return []
    dotted = ".".join(local) if "." not in local else local.replace(".", "")
    return [
        ("to-dotted-spelling", f"{dotted}@gmail.com"),
        ("to-plus-tag-spelling", f"{local}+shop@gmail.com"),
        ("to-googlemail-spelling", f"{local.upper()}@googlemail.com"),
    ]


def genuine_cases(
    mailbox: str, card_last4: str, amount_tiyin: int, occurred_at: datetime
) -> list[MailCase]:
    """Genuine notifications in the shapes real mail takes: each must be a credit."""
    genuine = bank_credit(mailbox, card_last4, amount_tiyin, occurred_at)
    signature = f"dkim=pass header.i=@{BANK_DOMAIN} header.s=mail header.b=Ab+/12Cd"
    cases = [
        MailCase("genuine", "genuine", genuine, None),
        MailCase(
            "no-dmarc-record",
            "genuine",
            rewrite_headers(
                genuine, auth=[gmail_verdict(signature, spf("pass", f"b@{BANK_DOMAIN}"))]
            ),
            None,
        ),
        MailCase(
            "dkim-only",
            "genuine",
            rewrite_headers(genuine, auth=[gmail_verdict(signature)]),
            None,
        ),
        MailCase(
            "dkim-by-organizational-domain",
            "genuine",
            rewrite_headers(genuine, auth=[gmail_verdict("dkim=pass header.d=uzcard.uz")]),
            None,
        ),
        MailCase(
            "declared-alias",
            "genuine",
            rewrite_headers(genuine, to=["Kassa <cashier@shop.example>"]),
            None,
            aliases=("cashier@shop.example",),
        ),
    ]
    for name, spelling in _spellings(mailbox):
        cases.append(MailCase(name, "genuine", rewrite_headers(genuine, to=[spelling]), None))
    sms = uzcard_credit_sms(
        to=mailbox, amount_tiyin=amount_tiyin, card_last4=card_last4, occurred_at=occurred_at
    )
    cases.append(MailCase("forwarded-sms", "genuine", sms, None, allow_forwarded=True))
    return cases
