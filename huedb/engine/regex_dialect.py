"""Chroma's `$regex` dialect (Rust's `regex` crate) on RE2, a linear-time engine.

A pattern is parsed with Rust's syntax and rewritten into an equivalent RE2 pattern: Rust
accepts things RE2 does not (`(?x)` verbose mode, stacked repetitions such as `a**`,
whitespace in `{2, 3}`, `\\u{..}` escapes, long Unicode property names) and its `\\d`, `\\s`,
`\\w` are Unicode-aware where RE2's are ASCII. What Rust refuses (look-around,
backreferences, unknown escapes, `a{2` ...) is refused here with `InvalidArgumentError`, as
are byte-oriented patterns, which Chroma refuses too. RE2 matches in time linear in the
document, so no pattern can pin a worker. Constructs RE2 cannot express are refused with a
message that says so ("not supported by huedb").
"""

from __future__ import annotations

import functools
from typing import Any

import re2

from huedb.errors import InvalidArgumentError

MAX_PATTERN_BYTES = 64 * 1024
"""Longest pattern accepted, in UTF-8 bytes."""
MAX_REGEX_MEMORY = 8 * 1024 * 1024
"""RE2's memory budget per compiled pattern; a pattern needing more is refused."""
MAX_NESTING = 250
"""Deepest group nesting accepted (Rust's default nest limit)."""
_CACHE_SIZE = 64

# Rust's Unicode-aware Perl classes, as RE2 class bodies.
_DIGIT = r"\p{Nd}"
_SPACE = (
    r"\t\n\x{0B}\f\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}"
)
_WORD = (
    r"\pL\pM\p{Nd}\p{Pc}\p{Nl}\x{200C}\x{200D}\x{24B6}-\x{24E9}"
    r"\x{1F130}-\x{1F149}\x{1F150}-\x{1F169}\x{1F170}-\x{1F189}"
)
_PERL = {"d": _DIGIT, "s": _SPACE, "w": _WORD}
_SIMPLE_ESCAPES = {"a": r"\x{07}", "f": r"\f", "t": r"\t", "n": r"\n", "r": r"\r", "v": r"\x{0B}"}
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}
_FLAGS = "imsUuxR"
_ASCII_CLASSES = frozenset(
    "alnum alpha ascii blank cntrl digit graph lower print punct space upper word xdigit".split()  # noqa: SIM905
)
_GENERAL_CATEGORIES = {
    "letter": "L", "casedletter": "Lu}\\p{Ll}\\p{Lt", "uppercaseletter": "Lu",
    "lowercaseletter": "Ll", "titlecaseletter": "Lt", "modifierletter": "Lm",
    "otherletter": "Lo", "mark": "M", "combiningmark": "M", "nonspacingmark": "Mn",
    "spacingmark": "Mc", "enclosingmark": "Me", "number": "N", "decimalnumber": "Nd",
    "digit": "Nd", "letternumber": "Nl", "othernumber": "No", "punctuation": "P",
    "punct": "P", "connectorpunctuation": "Pc", "dashpunctuation": "Pd",
    "openpunctuation": "Ps", "closepunctuation": "Pe", "initialpunctuation": "Pi",
    "finalpunctuation": "Pf", "otherpunctuation": "Po", "symbol": "S", "mathsymbol": "Sm",
    "currencysymbol": "Sc", "modifiersymbol": "Sk", "othersymbol": "So", "separator": "Z",
    "spaceseparator": "Zs", "lineseparator": "Zl", "paragraphseparator": "Zp", "other": "C",
    "control": "Cc", "cntrl": "Cc", "format": "Cf", "surrogate": "Cs", "privateuse": "Co",
    "lc": "Lu}\\p{Ll}\\p{Lt", "l&": "Lu}\\p{Ll}\\p{Lt",
}  # fmt: skip
_SHORT_CATEGORIES = frozenset(
    "L Lu Ll Lt Lm Lo M Mn Mc Me N Nd Nl No P Pc Pd Ps Pe Pi Pf Po S Sm Sc Sk So Z Zs Zl Zp "  # noqa: SIM905
    "C Cc Cf Cs Co".split()
)


def _options() -> re2.Options:
    options = re2.Options()
    options.encoding = re2.Options.Encoding.UTF8
    options.max_mem = MAX_REGEX_MEMORY
    options.perl_classes = True
    options.word_boundary = True
    options.longest_match = False
    options.posix_syntax = False
    options.never_capture = True
    options.log_errors = False
    return options


class _Translator:
    """Recursive-descent parser of Rust regex syntax that emits an RE2 pattern."""

    def __init__(self, pattern: str) -> None:
        self.p = pattern
        self.i = 0
        self.flags: set[str] = {"u"}
        self.names: set[str] = set()

    def fail(self, detail: str) -> InvalidArgumentError:
        return InvalidArgumentError(f"Invalid regex pattern {self.p!r}: {detail}")

    def peek(self, k: int = 0) -> str:
        j = self.i + k
        return self.p[j] if j < len(self.p) else ""

    def skip_ignored(self) -> None:
        """In verbose mode (?x), skip whitespace and # comments."""
        while "x" in self.flags and self.i < len(self.p):
            c = self.p[self.i]
            if c.isspace():
                self.i += 1
            elif c == "#":
                end = self.p.find("\n", self.i)
                self.i = len(self.p) if end < 0 else end + 1
            else:
                return

    def translate(self) -> str:
        out = self.alternation(0)
        if self.i < len(self.p):
            raise self.fail("unopened group")
        return out

    def alternation(self, depth: int) -> str:
        branches = [self.concatenation(depth)]
        while self.peek() == "|":
            self.i += 1
            branches.append(self.concatenation(depth))
        return "|".join(branches)

    def concatenation(self, depth: int) -> str:
        parts: list[str] = []
        while True:
            self.skip_ignored()
            c = self.peek()
            if c in ("", "|", ")"):
                return "".join(parts)
            if c in "*+?{":
                if not parts or isinstance(parts[-1], _FlagMark):
                    raise self.fail("repetition operator missing expression")
                parts[-1] = self.repetition(parts[-1])
                continue
            parts.append(self.atom(depth))

    def repetition(self, operand: str) -> str:
        c = self.p[self.i]
        self.i += 1
        op = self.counted() if c == "{" else c
        self.skip_ignored()
        if self.peek() == "?":
            self.i += 1
            op += "?"
        return f"(?:{operand}){op}"

    def counted(self) -> str:
        low = self.decimal()
        if low is None:
            raise self.fail("repetition quantifier expects a valid decimal")
        self.skip_spaces()
        high: int | None = low
        text = f"{{{low}}}"
        if self.peek() == ",":
            self.i += 1
            self.skip_spaces()
            high = self.decimal()
            text = f"{{{low},}}" if high is None else f"{{{low},{high}}}"
        self.skip_spaces()
        if self.peek() != "}":
            raise self.fail("unclosed counted repetition")
        self.i += 1
        if high is not None and high < low:
            raise self.fail("invalid repetition count range, the start must be <= the end")
        return text

    def skip_spaces(self) -> None:
        while self.peek().isspace() and self.peek() != "":
            self.i += 1

    def decimal(self) -> int | None:
        self.skip_spaces()
        start = self.i
        while self.peek().isascii() and self.peek().isdigit():
            self.i += 1
        if start == self.i:
            return None
        return int(self.p[start : self.i])

    def atom(self, depth: int) -> str:
        c = self.p[self.i]
        if c == "(":
            return self.group(depth)
        if c == "[":
            self.i += 1
            return self.bracket()
        if c == "\\":
            self.i += 1
            return self.escape(in_class=False)
        self.i += 1
        if c == ".":
            self.require_unicode()
            return "."
        if c in "^$":
            return c
        return _literal(c)

    def require_unicode(self) -> None:
        if "u" not in self.flags:
            raise self.fail("byte patterns (Unicode mode off) are not supported")

    def group(self, depth: int) -> str:
        if depth >= MAX_NESTING:
            raise self.fail("exceeds the nest limit")
        self.i += 1
        saved = set(self.flags)
        prefix = "(?:"
        if self.peek() == "?":
            self.i += 1
            c = self.peek()
            if c in "=!" or (c == "<" and self.peek(1) in "=!"):
                raise self.fail(
                    "look-around, including look-ahead and look-behind, is not supported"
                )
            if c == "P" and self.peek(1) == "<":
                self.i += 2
                self.group_name()
            elif c == "<":
                self.i += 1
                self.group_name()
            else:
                emitted, scoped = self.flag_group()
                if not scoped:
                    return _FlagMark(f"(?{emitted})" if emitted else "")
                prefix = f"(?{emitted}:" if emitted else "(?:"
        body = self.alternation(depth + 1)
        if self.peek() != ")":
            raise self.fail("unclosed group")
        self.i += 1
        self.flags = saved
        return f"{prefix}{body})"

    def group_name(self) -> None:
        end = self.p.find(">", self.i)
        if end < 0:
            raise self.fail("unclosed capture group name")
        name = self.p[self.i : end]
        ok = bool(name) and (name[0].isalpha() or name[0] == "_")
        if not ok or not all(ch.isalnum() or ch in "_.[]" for ch in name):
            raise self.fail(f"invalid capture group name {name!r}")
        if name in self.names:
            raise self.fail(f"duplicate capture group name {name!r}")
        self.names.add(name)
        self.i = end + 1

    def flag_group(self) -> tuple[str, bool]:
        """Parse `flags)` or `flags:`; returns (RE2 flags, whether a scoped group follows)."""
        on: list[str] = []
        off: list[str] = []
        negate = False
        seen: set[str] = set()
        while True:
            c = self.peek()
            if c == "":
                raise self.fail("unclosed group")
            if c in ":)":
                break
            if c == "-":
                if negate:
                    raise self.fail("repeated negation")
                negate = True
            elif c in _FLAGS:
                if c in seen:
                    raise self.fail("duplicate flag")
                seen.add(c)
                (off if negate else on).append(c)
            else:
                raise self.fail(f"unrecognized flag {c!r}")
            self.i += 1
        if negate and not off:
            raise self.fail("expected flag but got end of flags")
        if not seen and c == ")":
            raise self.fail("repetition operator missing expression")
        self.i += 1
        self.flags.update(on)
        self.flags.difference_update(off)
        keep_on = "".join(f for f in on if f in "imsU")
        keep_off = "".join(f for f in off if f in "imsU")
        emitted = keep_on + (f"-{keep_off}" if keep_off else "")
        return emitted, c == ":"

    def escape(self, in_class: bool) -> str:
        c = self.peek()
        if c == "":
            raise self.fail("incomplete escape sequence, reached end of pattern prematurely")
        self.i += 1
        if c.lower() in _PERL:
            self.require_unicode()
            body = _PERL[c.lower()]
            if in_class:
                return body if c.islower() else _negated_in_class(self, c)
            return f"[{body}]" if c.islower() else f"[^{body}]"
        if c in "pP":
            self.require_unicode()
            return self.unicode_class(negated=c == "P", in_class=in_class)
        if c in _SIMPLE_ESCAPES:
            return _SIMPLE_ESCAPES[c]
        if c in _HEX_ESCAPES:
            return _literal(chr(self.hex_escape(_HEX_ESCAPES[c])))
        if c.isascii() and c.isdigit():
            raise self.fail("backreferences are not supported")
        if not in_class:
            if c in "Az":
                return f"\\{c}"
            if c in "bB":
                if c == "b" and self.peek() == "{":
                    raise self.fail(r"\b{...} word boundaries are not supported by huedb")
                return f"\\{c}"
            if c in "<>":
                raise self.fail(rf"\{c} word boundaries are not supported by huedb")
        if c.isascii() and not c.isalnum() and c not in "<>":
            return _literal(c)
        raise self.fail("unrecognized escape sequence")

    def hex_escape(self, digits: int) -> int:
        if self.peek() == "{":
            end = self.p.find("}", self.i)
            if end < 0:
                raise self.fail("unclosed hexadecimal literal")
            text = self.p[self.i + 1 : end].strip()
            self.i = end + 1
        else:
            text = self.p[self.i : self.i + digits]
            if len(text) < digits:
                raise self.fail("incomplete escape sequence, reached end of pattern prematurely")
            self.i += digits
        if not text or not all(ch in "0123456789abcdefABCDEF" for ch in text):
            raise self.fail("invalid hexadecimal digit")
        value = int(text, 16)
        if value > 0x10FFFF or 0xD800 <= value <= 0xDFFF:
            raise self.fail("hexadecimal literal is not a Unicode scalar value")
        return value

    def unicode_class(self, negated: bool, in_class: bool) -> str:
        if self.peek() == "{":
            end = self.p.find("}", self.i)
            if end < 0:
                raise self.fail("unclosed Unicode class")
            name = self.p[self.i + 1 : end]
            self.i = end + 1
        else:
            name = self.peek()
            if not name:
                raise self.fail("incomplete escape sequence, reached end of pattern prematurely")
            self.i += 1
        names = _re2_property(name)
        if names is None:
            raise self.fail(f"Unicode property {name!r} is not supported by huedb")
        if negated and len(names) == 1:
            body = f"\\P{{{names[0]}}}"
            return body if in_class else f"[{body}]"
        body = "".join(f"\\p{{{n}}}" for n in names)
        if not negated:
            return body if in_class else f"[{body}]"
        if in_class:
            raise self.fail(f"negated Unicode property {name!r} inside a class is not supported")
        return f"[^{body}]"

    def bracket(self) -> str:
        """A bracketed class (after `[`), as an RE2 class or alternation of classes."""
        negated = self.peek() == "^"
        if negated:
            self.i += 1
        items: list[str] = []
        extra: list[str] = []  # whole RE2 atoms for the union (negated Perl classes)
        first = True
        while True:
            if "x" in self.flags:
                while self.peek().isspace() and self.peek():
                    self.i += 1
            c = self.peek()
            if c == "":
                raise self.fail("unclosed character class")
            if c == "]" and not first:
                self.i += 1
                break
            first = False
            if c == "[" and self.peek(1) == ":":
                end = self.p.find(":]", self.i + 2)
                name = self.p[self.i + 2 : end] if end >= 0 else ""
                if end >= 0 and name.removeprefix("^") in _ASCII_CLASSES:
                    self.i = end + 2
                    self.require_unicode()
                    items.append(f"[:{name}:]")
                    continue
            if c == "[":
                self.i += 1
                nested = self.bracket()
                if not nested.startswith("[") or nested.startswith("[^"):
                    raise self.fail("negated nested classes are not supported by huedb")
                items.append(nested[1:-1])
                continue
            if c in "&-~" and self.peek(1) == c:
                raise self.fail("class set operations (&&, --, ~~) are not supported by huedb")
            low = self.class_item(extra)
            if low is None:
                continue
            if self.peek() == "-" and self.peek(1) not in ("]", ""):
                self.i += 1
                high = self.class_item(extra)
                if high is None or len(low) != 1 or len(high) != 1:
                    raise self.fail("invalid character class range")
                if ord(high) < ord(low):
                    raise self.fail("invalid range boundary, must be start <= end")
                items.append(f"{_literal(low)}-{_literal(high)}")
            else:
                items.append(_literal(low) if len(low) == 1 else low)
        self.require_unicode()
        body = "".join(items)
        if not extra:
            return f"[{'^' if negated else ''}{body}]"
        if negated and not body and len(extra) == 1:
            return extra[0].replace("[^", "[", 1)
        if negated:
            raise self.fail(r"negated \W, \S or \D inside a negated class is not supported")
        return "(?:" + "|".join(([f"[{body}]"] if body else []) + extra) + ")"

    def class_item(self, extra: list[str]) -> str | None:
        """One class member: a single character, or an RE2 class fragment; None if it was
        put in `extra` (a negated Perl class)."""
        c = self.p[self.i]
        self.i += 1
        if c != "\\":
            return c
        esc = self.peek()
        if esc in _SIMPLE_ESCAPES or esc in _HEX_ESCAPES:
            if esc in _SIMPLE_ESCAPES:
                self.i += 1
                return {"a": "\x07", "f": "\f", "t": "\t", "n": "\n", "r": "\r", "v": "\x0b"}[esc]
            self.i += 1
            return chr(self.hex_escape(_HEX_ESCAPES[esc]))
        if esc in "SW":
            self.i += 1
            self.require_unicode()
            extra.append(f"[^{_PERL[esc.lower()]}]")
            return None
        fragment = self.escape(in_class=True)
        if fragment.startswith("\\") and len(fragment) == 2 and not fragment[1].isalnum():
            return fragment[1]
        return fragment


class _FlagMark(str):
    """An emitted `(?flags)` group: not an operand for a repetition."""


def _negated_in_class(translator: _Translator, letter: str) -> str:
    if letter == "D":
        return r"\P{Nd}"
    raise translator.fail(rf"\{letter} here is not supported by huedb")


def _literal(c: str) -> str:
    """One character as an RE2 literal."""
    if c.isascii() and c.isalnum():
        return c
    if c.isascii() and c.isprintable() and c != " ":
        return "\\" + c
    if c.isprintable() and not c.isspace():
        return c
    return f"\\x{{{ord(c):X}}}"


def _re2_property(name: str) -> list[str] | None:
    """RE2 names for a Rust Unicode property name (loosely matched), or None."""
    loose = name.replace(" ", "").replace("_", "").replace("-", "").lower()
    for prefix in ("generalcategory=", "gc=", "generalcategory:", "gc:"):
        if loose.startswith(prefix):
            loose = loose[len(prefix) :]
            break
    else:
        for prefix in ("script=", "sc=", "script:", "sc:"):
            if loose.startswith(prefix):
                return _script(name.split("=" if "=" in name else ":", 1)[1])
    if loose == "any":
        return ["Any"]
    for short in _SHORT_CATEGORIES:
        if short.lower() == loose:
            return [short]
    if loose in _GENERAL_CATEGORIES:
        return _GENERAL_CATEGORIES[loose].replace("}\\p{", " ").split()
    return _script(name)


def _script(name: str) -> list[str] | None:
    words = name.replace("-", " ").replace("_", " ").split()
    canonical = "_".join(w[:1].upper() + w[1:].lower() for w in words)
    try:
        re2.compile(f"\\p{{{canonical}}}", _options())
    except re2.error:
        return None
    return [canonical]


def to_re2(pattern: str) -> str:
    """The RE2 pattern equivalent to a Rust-syntax pattern (InvalidArgumentError if refused)."""
    if len(pattern.encode("utf-8", "surrogatepass")) > MAX_PATTERN_BYTES:
        raise InvalidArgumentError(
            f"Invalid regex pattern: longer than {MAX_PATTERN_BYTES} bytes "
            f"(starts {pattern[:40]!r})"
        )
    return _Translator(pattern).translate()


@functools.lru_cache(maxsize=_CACHE_SIZE)
def compile_pattern(pattern: str) -> Any:
    """Compile a `$regex` pattern in Chroma's dialect (cached; InvalidArgumentError if refused)."""
    translated = to_re2(pattern)
    try:
        return re2.compile(translated, _options())
    except re2.error as exc:
        raise InvalidArgumentError(f"Invalid regex pattern {pattern[:200]!r}: {exc}") from None


def search(pattern: str, text: str | None) -> bool:
    """Whether the pattern occurs anywhere in text (find semantics); False for no text."""
    if text is None:
        return False
    return compile_pattern(pattern).search(text.encode("utf-8", "surrogatepass")) is not None
