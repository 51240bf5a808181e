"""Every text exists in Uzbek, Russian and English with the same fields, and values are
escaped (a shop name cannot inject markup)."""

import pytest

from autopay_merchant_bot.texts import LANGUAGES, TEXTS, Raw, fields, say


@pytest.mark.parametrize("key", sorted(TEXTS))
def test_every_language_has_the_text_with_the_same_fields(key):
    entry = TEXTS[key]
    assert set(entry) == set(LANGUAGES)
    assert len({frozenset(fields(entry[lang])) for lang in LANGUAGES}) == 1, entry


def test_values_are_escaped_unless_raw():
    text = say("en", "card_added", card_last4="6412", gmail="<b>x</b>@gmail.com", card_id=1)
    assert "&lt;b&gt;" in text and "<b>x" not in text
    assert "<pre>a<b</pre>" not in say("en", "next_steps", curl="a<b", python=Raw("p"))
    assert "<pre>p</pre>" in say("en", "next_steps", curl="a", python=Raw("p"))


def test_unknown_language_falls_back_to_uzbek():
    assert say("de", "no_cards") == say("uz", "no_cards") == say(None, "no_cards")
