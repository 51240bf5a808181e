import json

import structlog
from hypothesis import given
from hypothesis import strategies as st

from autopay_runtime.logging import (
    _INLINE_SECRETS,
    _URL_CREDENTIALS,
    REDACTED,
    _scrub_text,
    configure_logging,
    get_logger,
)


def test_secrets_never_reach_the_log_line(capsys):
    configure_logging("test", json=True)
    get_logger(order_id="10001").info(
        "card added",
        api_key="ap_live_abcdefghijklmnop",
        app_password="abcd efgh ijkl mnop",
        headers={"x-api-key": "ap_live_zzz", "accept": "json"},
        body=b"Perevod na kartu ... balans",
        note="signed with whsec_c2VjcmV0c2VjcmV0 by ap_test_qwerty123",
        error="cannot reach nats://gateway:n4ts-pw@nats:4222 nor redis://:r3dis-pw@redis:6379/0",
    )
    line = capsys.readouterr().err.strip().splitlines()[-1]
    record = json.loads(line)
    assert record["order_id"] == "10001" and record["service"] == "test"
    assert record["api_key"] == REDACTED and record["app_password"] == REDACTED
    assert record["headers"] == {"x-api-key": REDACTED, "accept": "json"}
    assert record["body"] == REDACTED
    assert "nats://[redacted]@nats:4222" in record["error"]
    for secret in (
        "ap_live_abcdefghijklmnop",
        "abcd efgh",
        "whsec_c2Vj",
        "ap_test_qwerty",
        "balans",
        "n4ts-pw",
        "r3dis-pw",
    ):
        assert secret not in line
    structlog.reset_defaults()


@given(
    st.lists(
        st.sampled_from(["whsec_", "ap_live_", "ap_test_", "://", "u:p@", "abc", " ", "/", "Zz9"])
        | st.text(max_size=5),
        max_size=8,
    ).map("".join)
)
def test_the_quick_check_skips_only_text_the_patterns_cannot_match(text):
    """Most log values are skipped without a regex; a skipped one must be one the patterns
    would have left as it was."""
    full = _URL_CREDENTIALS.sub(rf"\1{REDACTED}@", _INLINE_SECRETS.sub(REDACTED, text))
    assert _scrub_text(text) == full


def test_a_log_line_is_one_json_object_whatever_its_values(capsys):
    """Times in ISO 8601, what JSON cannot hold as its repr, non-string keys as strings; a
    secret inside a nested value is redacted like one at the top."""
    from datetime import UTC, datetime

    configure_logging("test", json=True)
    get_logger().info(
        "mail recorded",
        at=datetime(2026, 5, 16, 4, 30, tzinfo=UTC),
        raw_bytes=b"\x00\x01",
        counters={1: "credits"},
        urls=["redis://:pw@redis:6379/0", "http://ok"],
        late=False,
        amount=5_003_700,
    )
    record = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert record["event"] == "mail recorded" and record["level"] == "info"
    assert record["at"] == "2026-05-16T04:30:00+00:00"
    assert record["raw_bytes"] == repr(b"\x00\x01")
    assert record["counters"] == {"1": "credits"}
    assert record["urls"] == ["redis://[redacted]@redis:6379/0", "http://ok"]
    assert (record["late"], record["amount"]) == (False, 5_003_700)
    structlog.reset_defaults()
