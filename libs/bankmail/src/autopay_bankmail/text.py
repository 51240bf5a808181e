"""Text normalisation: what every format parser gets to read."""

from __future__ import annotations

import re
from html.parser import HTMLParser

_SPACES = dict.fromkeys(
    map(
        ord,
        "\t\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
        "\u200a\u202f\u205f\u3000",
    ),
    " ",
)
_APOSTROPHES = dict.fromkeys(map(ord, "\u02bb\u02bc\u2018\u2019\u0060\u00b4\u2032"), "'")
_INVISIBLE = dict.fromkeys(map(ord, "\ufe0e\ufe0f\u200b\u200c\u200d\u2060\ufeff\u00ad"), None)
_TABLE = {**_SPACES, **_APOSTROPHES, **_INVISIBLE}


def normalize(text: str) -> str:
    """Unify line ends, spaces (NBSP, thin), Uzbek apostrophes; drop variation selectors and
    zero-width characters; collapse runs of spaces; strip each line."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").translate(_TABLE)
    lines = (re.sub(r" {2,}", " ", line).strip() for line in text.split("\n"))
    return "\n".join(lines)


_BLOCK_TAGS = frozenset(
    {"br", "p", "div", "tr", "li", "table", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "td"}
)
_SKIP_TAGS = frozenset({"script", "style", "head", "title"})


class _HtmlText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag in _SKIP_TAGS:
            self._skip += 1
        elif tag in _BLOCK_TAGS:
            self.chunks.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCK_TAGS:
            self.chunks.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.chunks.append(re.sub(r"[\r\n]+", " ", data))


def html_to_text(html: str) -> str:
    """Visible text of an HTML body, block elements on their own lines, entities decoded."""
    parser = _HtmlText()
    parser.feed(html)
    parser.close()
    return "".join(parser.chunks)
