"""The Authentication-Results tokenizer: grammar, ambiguity, and properties that must hold for
any input (survives: forged mail with any headers, a hostile envelope sender copied into the
receiver's comment)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autopay_bankmail.authres import AuthenticationResults, Malformed, parse
from autopay_bankmail.trust import receiver_verdict

BANK = "info.uzcard.uz"
PROPS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def results(value: str) -> AuthenticationResults:
    parsed = parse(value)
    assert isinstance(parsed, AuthenticationResults), parsed
    return parsed


def test_gmail_header_with_comments_and_base64_signature():
    parsed = results(
        "mx.google.com;\r\n       dkim=pass header.i=@github.com header.s=pf2023 header.b=Mq/o2+7x;"
        "\r\n       arc=pass (i=1 spf=pass spfdomain=x.com dkim=pass dkdomain=x.com);"
        "\r\n       spf=pass (google.com: domain of noreply@github.com designates 192.30.252.201"
        " as permitted sender) smtp.mailfrom=noreply@github.com;"
        "\r\n       dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from=github.com"
    )
    assert parsed.authserv_id == "mx.google.com"
    assert [(r.method, r.result) for r in parsed.results] == [
        ("dkim", "pass"),
        ("arc", "pass"),
        ("spf", "pass"),
        ("dmarc", "pass"),
    ]
    dkim = parsed.results[0]
    assert dkim.get("header", "i").domain == "github.com"
    assert dkim.get("header", "i").local_part == ""
    assert dkim.get("header", "b").text == "Mq/o2+7x"
    assert parsed.results[2].get("smtp", "mailfrom").domain == "github.com"


def test_version_method_version_reason_and_nested_comments():
    parsed = results(
        'mx.example 1; dkim/1 = pass (good (nested \\) sig) ok) reason="all good" '
        "header.d=Example.COM; none-such=neutral"
    )
    first = parsed.results[0]
    assert (first.method, first.result, first.reason) == ("dkim", "pass", "all good")
    assert first.get("header", "d").domain == "example.com"


def test_none_and_trailing_semicolon():
    assert results("mx.google.com; none").results == ()
    assert len(results("mx.google.com; dkim=pass header.d=a.uz;").results) == 1


@pytest.mark.parametrize(
    ("value", "domain", "local"),
    [
        ('"x@info.uzcard.uz"@evil.example', "evil.example", "x@info.uzcard.uz"),
        ("info.uzcard.uz@evil.example", "evil.example", "info.uzcard.uz"),
        ("@info.uzcard.uz", "info.uzcard.uz", ""),
        ("a@b@info.uzcard.uz", None, None),
        ('"info.uzcard.uz"', None, None),
        ("info.uzcard.uz.", None, None),
        ("[info.uzcard.uz]", None, None),
    ],
)
def test_property_values_keep_their_structure(value, domain, local):
    prop = results(f"mx.google.com; dkim=pass header.i={value}").results[0].get("header", "i")
    assert (prop.domain, prop.local_part) == (domain, local)


@pytest.mark.parametrize(
    "value",
    [
        # the envelope sender copied into the spf comment closes it early: ambiguous
        'mx.google.com; spf=pass (google.com: domain of "a); dkim=pass header.d=info.uzcard.uz'
        ' (b"@evil.example designates 1.2.3.4 as permitted sender) smtp.mailfrom="a);'
        ' dkim=pass header.d=info.uzcard.uz (b"@evil.example',
        'mx.google.com; spf=pass (domain of "x@info.uzcard.uz"@evil.example) smtp.mailfrom=a@b.c',
        'mx.google.com; dkim=pass header.s="a;b" header.d=b.uz',
        "mx.google.com; dkim=pass (unterminated header.d=b.uz",
        'mx.google.com; dkim=pass header.d="unterminated',
        "mx.google.com; dkim=pass header.d=b.uz)",
        "mx.google.com; dkim=pass header.d=b.uz dkim=pass",
        "mx.google.com; dkim=pass header.d",
        "mx.google.com; dkim pass",
        "mx.google.com; =pass",
        "mx.google.com",
        "mx.google.com; none; dkim=pass header.d=b.uz",
        "; dkim=pass header.d=b.uz",
        "",
        "mx.google.com; dkim=pass header.d=b.uz\x00",
        "mx.google.com; dkim=pass header.d=b.uz" + " " * 20_000,
        'mx.google.com; dkim=pass header.d=b.uz"x"',
    ],
)
def test_unclean_headers_are_malformed(value):
    assert isinstance(parse(value), Malformed)


# --- properties ---------------------------------------------------------------------------

LOOKALIKES = [
    BANK,
    "uzcard.uz",
    f"{BANK}.evil.example",
    f"x{BANK}",
    "info-uzcard.uz",
    "xuzcard.uz",
    "uzcard.uz.example",
    f"{BANK}.",
]
ws = st.sampled_from([" ", "  ", "\r\n ", "\t", "\r\n\t "])
bank_text = st.sampled_from(LOOKALIKES)
word = st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True)
evil_domain = st.builds(lambda a, b: f"{a}.{b}", word, st.sampled_from(["example", "com", "uz"]))


@st.composite
def comment(draw) -> str:
    inner = draw(st.lists(st.one_of(bank_text, word, st.just("designates 1.2.3.4")), max_size=4))
    text = " ".join(inner)
    if draw(st.booleans()):
        text += f" ({draw(bank_text)})"
    return f"({text})"


@st.composite
def hostile_property(draw) -> str:
    """A property where the bank domain proves nothing."""
    bank = draw(bank_text)
    other = draw(evil_domain)
    return draw(
        st.sampled_from(
            [
                f'header.i="x@{bank}"@{other}',
                f"header.i={bank}@{other}",
                f'header.i="{bank}"',
                f"header.d=@{bank}",
                f"header.s={bank}",
                f"header.b={bank}",
                f"header.from={bank}",
                f"smtp.mailfrom=bounce@{bank}",
                f"smtp.helo={bank}",
                f"policy.{draw(word)}={bank}",
                f"header.d={other}",
                f"header.i=@{other}",
            ]
        )
    )


@st.composite
def resinfo(draw) -> str:
    """A result statement in which the bank domain is never a passing DKIM domain token."""
    method, result = draw(
        st.sampled_from(
            [
                ("dkim", "pass"),
                ("dkim", "fail"),
                ("dkim", "neutral"),
                ("dkim", "none"),
                ("dkim", "temperror"),
                ("spf", "pass"),
                ("dmarc", "pass"),
                ("arc", "pass"),
                ("x-dkim", "pass"),
                ("dkim-adsp", "pass"),
                ("auth", "pass"),
            ]
        )
    )
    parts = [f"{method}={result}"]
    if draw(st.booleans()):
        parts.append(draw(comment()))
    if draw(st.booleans()):
        parts.append(f'reason="{draw(bank_text)} {draw(word)}"')
    props = draw(st.lists(hostile_property(), max_size=3))
    if (method, result) != ("dkim", "pass") and draw(st.booleans()):
        # a bank domain token is allowed here: it is not under a passing DKIM result
        props.append(f"header.d={draw(bank_text)}")
    parts += props
    return draw(ws).join(parts)


@st.composite
def hostile_header(draw) -> str:
    statements = draw(st.lists(resinfo(), min_size=1, max_size=5))
    glue = [draw(st.sampled_from([";", "; ", ";\r\n       "])) for _ in statements]
    return "mx.google.com" + "".join(g + s for g, s in zip(glue, statements, strict=True))


@PROPS
@given(hostile_header())
def test_a_bank_domain_outside_a_passing_dkim_domain_token_never_passes(value):
    verdict = receiver_verdict([value], BANK, "mx.google.com")
    assert not verdict.trusted, value


@PROPS
@given(hostile_header())
def test_the_same_headers_pass_once_a_real_signature_is_added(value):
    """The generator is not vacuous: the headers it makes do tokenize and are judged on their
    results (an aligned signature added to a clean one passes, unless a result refuses)."""
    parsed = parse(value)
    signed = value + f"; dkim=pass header.i=@{BANK} header.s=mail"
    if isinstance(parsed, Malformed):
        assert isinstance(parse(signed), Malformed)
        return
    dmarc = [r for r in parsed.results if r.method == "dmarc"]
    verdict = receiver_verdict([signed], BANK, "mx.google.com")
    if not dmarc:
        assert verdict.trusted, (value, verdict)
    else:
        assert verdict.trusted == all(
            r.result == "pass"
            and (r.get("header", "from") is None or r.get("header", "from").text == BANK)
            for r in dmarc
        )


@PROPS
@given(st.text(max_size=600))
def test_any_text_tokenizes_or_is_malformed(value):
    parsed = parse(value)
    assert isinstance(parsed, AuthenticationResults | Malformed)
    receiver_verdict([value], BANK, "mx.google.com")


@PROPS
@given(
    st.lists(
        st.sampled_from(
            [
                "mx.google.com",
                ";",
                " ",
                "(",
                ")",
                '"',
                "\\",
                "=",
                ".",
                "@",
                "dkim",
                "pass",
                "header",
                "d",
                "i",
                BANK,
                "\r\n ",
                "none",
                "/",
                "1",
            ]
        ),
        max_size=40,
    )
)
def test_any_arrangement_of_the_grammar_tokens_never_raises(tokens):
    value = "".join(tokens)
    parsed = parse(value)
    assert isinstance(parsed, AuthenticationResults | Malformed)
    if receiver_verdict([value], BANK, "mx.google.com").trusted:
        # a pass needs a real domain token for the bank under a passing dkim result
        assert isinstance(parsed, AuthenticationResults)
        assert any(
            r.method == "dkim"
            and r.result == "pass"
            and any(v.domain == BANK for t, _, v in r.properties if t == "header")
            for r in parsed.results
        )


@pytest.mark.timeout(30)
def test_long_inputs_stay_linear():
    assert isinstance(parse("mx.google.com; " + "a" * 500_000), Malformed)
    assert isinstance(parse("x; " + "a=" * 5_000 + "(" * 3_000), Malformed)
    nested = parse("mx.google.com; dkim=pass " + "(" * 8_000 + ")" * 8_000)
    assert isinstance(nested, AuthenticationResults)
