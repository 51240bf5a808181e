"""An `Authentication-Results` header value, tokenized (RFC 8601), never by splitting on regexes.

    payload   = [CFWS] authserv-id [CFWS version] ( [CFWS] ";" [CFWS] "none" / 1*resinfo ) [CFWS]
    resinfo   = [CFWS] ";" method ["/" version] "=" result [CFWS reasonspec] *(CFWS propspec)
    propspec  = ptype "." property "=" pvalue
    pvalue    = [CFWS] ( value / [ [local-part] "@" ] domain-name ) [CFWS]

Comments nest and may hold quoted pairs; inside a comment a double quote is plain text, so a
`)` in a quoted string that the receiver copied into its comment (the envelope sender in the
`spf=` comment) closes the comment early and whatever follows would read as results. The
receiver writes such text unescaped, so its header cannot be read one way only: a comment that
holds a double quote, or a quoted string that holds `(`, `)` or `;`, makes the header
`Malformed` (ambiguous), as does any deviation from the grammar. `parse` never raises.

A property value keeps its structure: `header.i="x@bank.uz"@evil.example` has the local part
`x@bank.uz` and the domain `evil.example`; only `domain` may ever be compared with a domain.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_HEADER_CHARS = 16_384

_WSP = " \t\r\n"
_KEYWORD = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?")
_TOKEN_SPECIALS = set('()<>@,;:\\"/[]?=') | set(_WSP)
_PVALUE_STOP = set(_WSP) | set('();"')
_DOMAIN_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_AMBIGUOUS_IN_QUOTES = set("();")


@dataclass(frozen=True)
class PropertyValue:
    """One property value. `domain` is set only for a syntactically valid domain-name (the
    whole value, or what follows the unquoted `@`), lowercased; `local_part` only when an `@`
    form was written (`""` for `@domain`)."""

    text: str
    domain: str | None = None
    local_part: str | None = None


@dataclass(frozen=True)
class ResultInfo:
    """One `method=result` statement with its properties, in the order written."""

    method: str
    result: str
    reason: str | None
    properties: tuple[tuple[str, str, PropertyValue], ...]

    def get(self, ptype: str, prop: str) -> PropertyValue | None:
        """The property's value, or None when it is absent or written more than once."""
        found = [v for t, p, v in self.properties if t == ptype and p == prop]
        return found[0] if len(found) == 1 else None


@dataclass(frozen=True)
class AuthenticationResults:
    authserv_id: str
    results: tuple[ResultInfo, ...]


@dataclass(frozen=True)
class Malformed:
    """The header does not tokenize cleanly; `reason` says where."""

    reason: str


class _Error(Exception):
    pass


def parse(value: str) -> AuthenticationResults | Malformed:
    """Tokenize one header value (unfolded or not). Never raises."""
    if not isinstance(value, str):
        return Malformed("not text")
    if len(value) > MAX_HEADER_CHARS:
        return Malformed(f"longer than {MAX_HEADER_CHARS} characters")
    if any((ord(c) < 32 and c not in _WSP) or ord(c) == 127 for c in value):
        return Malformed("control character")
    try:
        return _Parser(value).payload()
    except _Error as exc:
        return Malformed(str(exc))
    except Exception as exc:  # a bug here must refuse the mail, never crash the reader
        return Malformed(f"tokenizer error: {type(exc).__name__}")


def domain_name(text: str) -> str | None:
    """`text` as a lowercased domain-name (at least two LDH labels), else None."""
    labels = text.lower().split(".")
    if len(labels) < 2 or len(text) > 253:
        return None
    if all(_DOMAIN_LABEL.fullmatch(label) for label in labels):
        return text.lower()
    return None


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    # --- lexical ------------------------------------------------------------------------------

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def fail(self, what: str) -> _Error:
        return _Error(f"{what} at offset {self.pos}")

    def cfws(self) -> bool:
        """Skip folding white space and comments; True if anything was skipped."""
        start = self.pos
        while not self.at_end():
            char = self.peek()
            if char in _WSP:
                self.pos += 1
            elif char == "(":
                self.comment()
            else:
                break
        return self.pos > start

    def comment(self) -> None:
        depth = 0
        while True:
            if self.at_end():
                raise self.fail("unterminated comment")
            char = self.peek()
            self.pos += 1
            if char == "\\":
                if self.at_end():
                    raise self.fail("escape at the end of a comment")
                self.pos += 1
            elif char == '"':
                raise self.fail("double quote inside a comment (ambiguous)")
            elif char == "(":
                depth += 1
            elif char == ")":
                depth -= 1
                if depth == 0:
                    return

    def quoted_string(self) -> str:
        assert self.peek() == '"'
        self.pos += 1
        out: list[str] = []
        while True:
            if self.at_end():
                raise self.fail("unterminated quoted string")
            char = self.peek()
            self.pos += 1
            if char == "\\":
                if self.at_end():
                    raise self.fail("escape at the end of a quoted string")
                out.append(self.peek())
                self.pos += 1
            elif char == '"':
                text = "".join(out)
                if _AMBIGUOUS_IN_QUOTES & set(text):
                    raise self.fail("parenthesis or semicolon inside a quoted string (ambiguous)")
                return text
            else:
                out.append(char)

    def keyword(self, what: str) -> str:
        match = _KEYWORD.match(self.text, self.pos)
        if not match:
            raise self.fail(f"expected {what}")
        self.pos = match.end()
        return match.group().lower()

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise self.fail(f"expected {char!r}")
        self.pos += 1

    def token(self) -> str:
        start = self.pos
        while not self.at_end() and self.peek() not in _TOKEN_SPECIALS:
            self.pos += 1
        if self.pos == start:
            raise self.fail("expected a token")
        return self.text[start : self.pos]

    def value(self) -> str:
        return self.quoted_string() if self.peek() == '"' else self.token()

    # --- grammar ------------------------------------------------------------------------------

    def payload(self) -> AuthenticationResults:
        self.cfws()
        authserv_id = self.value().lower()
        if self.cfws() and self.peek().isdigit():
            self.keyword("a version")
            self.cfws()
        results: list[ResultInfo] = []
        seen_none = False
        while not self.at_end():
            self.expect(";")
            self.cfws()
            if self.at_end():  # a trailing ";" adds nothing
                break
            if (
                self.text[self.pos : self.pos + 4].lower() == "none"
                and not results
                and not seen_none
            ):
                end = self.pos + 4
                if end == len(self.text) or self.text[end] in _WSP + "(;":
                    self.pos = end
                    seen_none = True
                    self.cfws()
                    continue
            if seen_none:
                raise self.fail("results after 'none'")
            results.append(self.resinfo())
        if not results and not seen_none:
            raise self.fail("no results")
        return AuthenticationResults(authserv_id, tuple(results))

    def resinfo(self) -> ResultInfo:
        method = self.keyword("a method")
        self.cfws()
        if self.peek() == "/":
            self.pos += 1
            self.cfws()
            self.keyword("a method version")
            self.cfws()
        self.expect("=")
        self.cfws()
        result = self.keyword("a result")
        reason: str | None = None
        properties: list[tuple[str, str, PropertyValue]] = []
        while True:
            spaced = self.cfws()
            if self.at_end() or self.peek() == ";":
                break
            if not spaced:
                raise self.fail("expected white space before a property")
            name = self.keyword("a property type")
            self.cfws()
            if name == "reason" and self.peek() == "=" and reason is None and not properties:
                self.pos += 1
                self.cfws()
                reason = self.value()
                continue
            self.expect(".")
            self.cfws()
            prop = self.keyword("a property")
            self.cfws()
            self.expect("=")
            properties.append((name, prop, self.pvalue()))
        return ResultInfo(method, result.lower(), reason, tuple(properties))

    def pvalue(self) -> PropertyValue:
        self.cfws()
        if self.peek() == '"':
            quoted = self.quoted_string()
            if self.peek() != "@":
                self.after_value()
                return PropertyValue(quoted)
            self.pos += 1
            domain = self.run()
            self.after_value()
            text = f'"{quoted}"@{domain}'
            return PropertyValue(text, domain_name(domain), quoted)
        text = self.run()
        if not text:
            raise self.fail("expected a property value")
        self.after_value()
        if "@" not in text:
            return PropertyValue(text, domain_name(text))
        local, _, domain = text.rpartition("@")
        if local and not _DOT_ATOM.fullmatch(local):
            return PropertyValue(text)  # e.g. two `@`: no domain can be trusted from it
        return PropertyValue(text, domain_name(domain), local)

    def run(self) -> str:
        start = self.pos
        while not self.at_end() and self.peek() not in _PVALUE_STOP:
            self.pos += 1
        return self.text[start : self.pos]

    def after_value(self) -> None:
        if not (self.at_end() or self.peek() in _WSP + "(;"):
            raise self.fail("unexpected character after a property value")
