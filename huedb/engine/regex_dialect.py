"""Chroma's `$regex` dialect (Rust's `regex` crate) on RE2, a linear-time engine.

A pattern is parsed with Rust's syntax and rewritten into an equivalent RE2 pattern: Rust
accepts things RE2 does not (`(?x)` verbose mode, stacked repetitions such as `a**`,
whitespace in `{2, 3}`, `\\u{..}` escapes, long Unicode property names) and its `\\d`, `\\s`,
`\\w` are Unicode-aware where RE2's are ASCII. What Rust refuses (look-around,
backreferences, unknown escapes, `a{2` ...) is refused here with `InvalidArgumentError`, as
are byte-oriented patterns, which Chroma refuses too. RE2 matches in time linear in the
document, so no pattern can pin a worker. Constructs RE2 cannot express are refused with a
message that says so ("not supported by huedb").

Two of Rust's assertions RE2 lacks: the Unicode word boundaries `\\b` / `\\B` (RE2's look at
ASCII bytes) and `^` / `$` in CRLF mode `(?mR)` (RE2's see `\\n` only). On a document where
RE2's would answer differently (a non-ASCII one, or one holding `\\r`), the pattern runs,
still on RE2, over a *framed* copy of the document: every character between two marker
bytes that carry what those assertions look at (`_` for a word character, `\\x01` for
another, `\\n` for a line end of the pattern's mode), every character of the pattern framed
the same way, so RE2's ASCII `\\b` and multi-line `^` / `$` between two frames answer Rust's
question exactly (`_frame`).

RE2 takes a count of at most 1000 in a counted repetition, and of the product of nested
ones (`(?:a{500}){3}` is refused); Rust's only bound is the size of the compiled program.
A larger count becomes a concatenation of pieces RE2 takes, matching the same strings
(`a{1200}` is `(?:a){1000}(?:a){200}`, `a{1200,}` adds `(?:a)*`, `a{0,1200}` is
`(?:a){0,1000}(?:a){0,200}`; nested counts as copies of their operand). A pattern whose
program would still be over RE2's memory budget is refused as too large for huedb (Rust's
own 10 MiB limit refuses those too on Chroma: `a{1000000}`, `\\w{1001}`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import re2

from huedb.errors import InvalidArgumentError

MAX_PATTERN_BYTES = 64 * 1024
"""Longest pattern accepted, in UTF-8 bytes."""
MAX_REGEX_MEMORY = 8 * 1024 * 1024
"""RE2's memory budget per compiled pattern; a pattern needing more is refused."""
MAX_NESTING = 250
"""Deepest group nesting accepted (Rust's default nest limit)."""
MAX_REPEAT = 1000
"""RE2's largest count of a counted repetition, and of the product of nested ones."""
MAX_INSTRUCTIONS = MAX_REGEX_MEMORY * 2 // 3 // 8
"""RE2's largest program under MAX_REGEX_MEMORY (two thirds of it, 8 bytes an instruction)."""
MAX_EXPANDED_BYTES = 1024 * 1024
"""Most RE2 pattern text the rewriting of counted repetitions may add to a pattern."""
MAX_COUNT = 2**32 - 1
"""Largest count of a repetition Rust parses (a `u32`)."""
_CACHE_SIZE = 64


def _ranges(spec: str) -> str:
    """An RE2 class body of hexadecimal code points and ranges ("AA 2B0-2B8 ...")."""
    items = (item.split("-") for item in spec.split())
    return "".join("-".join(f"\\x{{{bound}}}" for bound in bounds) for bounds in items)


# Rust's tables are Unicode 16.0 (regex-syntax 0.8.10, Chroma 1.5.9's), RE2's 15.1: the
# characters of a property that are new in 16.0, added to RE2's classes (generated from
# regex-syntax's `unicode_tables`, minus what RE2's classes already hold).
_WORD_16 = _ranges(
    "897 1C89-1C8A A7CB-A7CD A7DA-A7DC 105C0-105F3 10D40-10D65 10D69-10D6D 10D6F-10D85 "
    "10EC2-10EC4 10EFC 11380-11389 1138B 1138E 11390-113B5 113B7-113C0 113C2 113C5 "
    "113C7-113CA 113CC-113D3 113E1-113E2 116D0-116E3 11BC0-11BE0 11BF0-11BF9 11F5A "
    "13460-143FA 16100-16139 16D40-16D6C 16D70-16D79 18CFF 1CCF0-1CCF9 1E5D0-1E5FA"
)
_ASSIGNED_16 = _ranges(
    "897 1B4E-1B4F 1B7F 1C89-1C8A 2427-2429 31E4-31E5 A7CB-A7CD A7DA-A7DC 105C0-105F3 "
    "10D40-10D65 10D69-10D85 10D8E-10D8F 10EC2-10EC4 10EFC 11380-11389 1138B 1138E "
    "11390-113B5 113B7-113C0 113C2 113C5 113C7-113CA 113CC-113D5 113D7-113D8 113E1-113E2 "
    "116D0-116E3 11BC0-11BE1 11BF0-11BF9 11F5A 13460-143FA 16100-16139 16D40-16D79 18CFF "
    "1CC00-1CCF9 1CD00-1CEB3 1E5D0-1E5FA 1E5FF 1F8B2-1F8BB 1F8C0-1F8C1 1FA89 1FA8F 1FABE "
    "1FAC6 1FADC 1FADF 1FAE9 1FBCB-1FBEF"
)
# Lowercase and Uppercase beyond Ll / Lu: Other_Lowercase / Other_Uppercase, and 16.0's.
_OTHER_LOWER = _ranges(
    "AA BA 2B0-2B8 2C0-2C1 2E0-2E4 345 37A 10FC 1C8A 1D2C-1D6A 1D78 1D9B-1DBF 2071 207F "
    "2090-209C 2170-217F 24D0-24E9 2C7C-2C7D A69C-A69D A770 A7CD A7DB A7F2-A7F4 A7F8-A7F9 "
    "AB5C-AB5F AB69 10780 10783-10785 10787-107B0 107B2-107BA 10D70-10D85 1E030-1E06D"
)
_OTHER_UPPER = _ranges(
    "1C89 2160-216F 24B6-24CF A7CB-A7CC A7DA A7DC 10D50-10D65 1F130-1F149 1F150-1F169 1F170-1F189"
)

# Rust's Unicode-aware Perl classes, as RE2 class bodies.
_DIGIT = r"\p{Nd}"
_SPACE = (
    r"\t\n\x{0B}\f\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}"
)
_WORD = (
    r"\pL\pM\p{Nd}\p{Pc}\p{Nl}\x{200C}\x{200D}\x{24B6}-\x{24E9}"
    r"\x{1F130}-\x{1F149}\x{1F150}-\x{1F169}\x{1F170}-\x{1F189}" + _WORD_16
)
# Rust's binary properties RE2 can hold exactly (loose names): property -> (class body, the
# body of its complement when it can stand inside a class, else None).
_BINARY_PROPERTIES: dict[str, tuple[str, str | None]] = {
    "ascii": (r"\x00-\x{7F}", r"\x{80}-\x{10FFFF}"),
    "assigned": (r"\pL\pM\pN\pP\pS\pZ\pC" + _ASSIGNED_16, None),
    "whitespace": (_SPACE, None),
    "wspace": (_SPACE, None),
    "space": (_SPACE, None),
    "lowercase": (r"\p{Ll}" + _OTHER_LOWER, None),
    "lower": (r"\p{Ll}" + _OTHER_LOWER, None),
    "uppercase": (r"\p{Lu}" + _OTHER_UPPER, None),
    "upper": (r"\p{Lu}" + _OTHER_UPPER, None),
}
# A framed document (see the module's doc): a marker byte each side of every character.
_WORD_MARK, _OTHER_MARK, _LINE_MARK = ord("_"), 0x01, ord("\n")
_MARK = r"[_\x01\n]"
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
    """Recursive-descent parser of Rust regex syntax that emits an RE2 pattern.

    With `framed`, every character the pattern consumes is framed by marker bytes, to run
    over a framed document (`_frame`). `boundaries` collects the word boundaries met
    ("unicode" for `\\b` / `\\B`, "ascii" for `(?-u:\\b)`, "ascii_not" for `(?-u:\\B)`), and
    `line_anchors` the multi-line `^` / `$` ("lf", or "crlf" under `R`).
    """

    def __init__(self, pattern: str, framed: bool = False) -> None:
        self.p = pattern
        self.i = 0
        self.flags: set[str] = {"u"}
        self.names: set[str] = set()
        self.framed = framed
        self.boundaries: set[str] = set()
        self.line_anchors: set[str] = set()
        self.expanded = 0  # bytes of RE2 pattern the pieces of large counts added

    def fail(self, detail: str) -> InvalidArgumentError:
        return InvalidArgumentError(f"Invalid regex pattern {self.p!r}: {detail}")

    def too_large(self, detail: str = "") -> InvalidArgumentError:
        return _too_large(self.p, detail)

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
        if _info(out)[1] > MAX_INSTRUCTIONS:
            raise self.too_large()
        if "unicode" in self.boundaries and self.boundaries & {"ascii", "ascii_not"}:
            raise self.fail(
                r"Unicode (\b, \B) and ASCII ((?-u:\b)) word boundaries in one pattern "
                "are not supported by huedb"
            )
        if len(self.line_anchors) > 1:
            raise self.fail(
                "multi-line ^ / $ both in and out of CRLF mode (?R) in one pattern are not "
                "supported by huedb"
            )
        return out

    def char(self, atom: str) -> str:
        """An atom that consumes one character, framed when the pattern is."""
        return _Frag.of(f"{_MARK}{atom}{_MARK}" if self.framed else atom, weight=1, consumes=True)

    def alternation(self, depth: int) -> str:
        branches = [self.concatenation(depth)]
        while self.peek() == "|":
            self.i += 1
            branches.append(self.concatenation(depth))
        # RE2 compiles every branch (merging common prefixes): the heaviest is a lower bound.
        infos = [_info(branch) for branch in branches]
        return _Frag.of(
            "|".join(branches),
            max(factor for factor, _, _ in infos),
            max(weight for _, weight, _ in infos),
            any(consumes for _, _, consumes in infos),
        )

    def concatenation(self, depth: int) -> str:
        parts: list[str] = []
        while True:
            self.skip_ignored()
            c = self.peek()
            if c in ("", "|", ")"):
                infos = [_info(part) for part in parts]
                return _Frag.of(
                    "".join(parts),
                    max((factor for factor, _, _ in infos), default=1),
                    sum(weight for _, weight, _ in infos),
                    any(consumes for _, _, consumes in infos),
                )
            if c in "*+?{":
                if not parts or isinstance(parts[-1], _FlagMark):
                    raise self.fail("repetition operator missing expression")
                parts[-1] = self.repetition(parts[-1])
                continue
            parts.append(self.atom(depth))

    def repetition(self, operand: str) -> str:
        c = self.p[self.i]
        self.i += 1
        bounds = self.counted() if c == "{" else None
        self.skip_ignored()
        lazy = ""
        if self.peek() == "?":
            self.i += 1
            lazy = "?"
        if bounds is not None:
            return self.counted_repetition(operand, *bounds, lazy)
        # *, + and ?: RE2 compiles the operand once and counts nothing.
        return _Frag.of(f"(?:{operand}){c}{lazy}", *_info(operand))

    def counted_repetition(self, operand: str, low: int, high: int | None, lazy: str) -> str:
        """`operand{low,high}` (`high` None: no upper bound) within RE2's limits.

        RE2 refuses a count above MAX_REPEAT, or nested counts whose product is: a larger
        count becomes a concatenation (never a nesting) of pieces RE2 takes, which matches
        the same strings: `{low}` as pieces of at most `most`, then `*` or, up to `high`,
        pieces `{0,most}`. Lazy pieces stay lazy (only whether a match exists matters)."""
        factor, weight, consumes = _info(operand)
        if high == 0:
            return _Frag.of("(?:)")  # X{0} matches the empty string, whatever X
        if not consumes:
            # It only asserts (or matches the empty string): once is as many times.
            return _Frag.of(f"(?:{operand})" + ("?" if low == 0 else ""), factor)
        top = low if high is None else high
        weight *= top if high is not None else max(low, 1)  # RE2 compiles that many copies
        if weight > MAX_INSTRUCTIONS:
            # Too large for RE2, unless a {0} around drops it (as Rust does): `translate`
            # refuses the pattern if it stays.
            return _Frag.of(f"(?:{operand})", factor, weight, True)
        most = MAX_REPEAT // factor  # RE2 keeps the product of nested counts <= MAX_REPEAT
        if top <= most:
            count = (
                f"{{{low}}}"
                if high == low
                else f"{{{low},}}"
                if high is None
                else f"{{{low},{high}}}"
            )
            can_consume = high is None or high > 0  # not X{0}
            return _Frag.of(
                f"(?:{operand}){count}{lazy}", factor * max(top, 1), weight, can_consume
            )
        full, rest = divmod(low, most)
        counts = [f"{{{most}}}"] * full + ([f"{{{rest}}}"] if rest else [])
        if high is None:
            counts.append("*")
        else:
            full, rest = divmod(high - low, most)
            counts += [f"{{0,{most}}}"] * full + ([f"{{0,{rest}}}"] if rest else [])
        self.expanded += len(counts) * (len(operand) + 16)
        if self.expanded > MAX_EXPANDED_BYTES:
            raise self.too_large(
                f"its counts, cut into pieces of at most {MAX_REPEAT} for its regex engine "
                f"(RE2), make a pattern over {MAX_EXPANDED_BYTES >> 20} MiB"
            )
        pieces = "".join(f"(?:{operand}){count}{lazy}" for count in counts)
        return _Frag.of(f"(?:{pieces})", factor * most, weight, True)

    def counted(self) -> tuple[int, int | None]:
        """`{n}`, `{n,}` or `{n,m}` (after the brace): (n, m), m None for no upper bound."""
        low = self.decimal()
        if low is None:
            raise self.fail("repetition quantifier expects a valid decimal")
        self.skip_spaces()
        high: int | None = low
        if self.peek() == ",":
            self.i += 1
            self.skip_spaces()
            high = self.decimal()
        self.skip_spaces()
        if self.peek() != "}":
            raise self.fail("unclosed counted repetition")
        self.i += 1
        if high is not None and high < low:
            raise self.fail("invalid repetition count range, the start must be <= the end")
        return low, high

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
        digits = self.p[start : self.i].lstrip("0") or "0"
        if len(digits) > len(str(MAX_COUNT)) or int(digits) > MAX_COUNT:
            raise self.fail("decimal literal invalid")  # Rust's counts are u32
        return int(digits)

    def atom(self, depth: int) -> str:
        c = self.p[self.i]
        if c == "(":
            return self.group(depth)
        if c == "[":
            self.i += 1
            return self.char(self.bracket())
        if c == "\\":
            self.i += 1
            if self.peek() and self.peek() in "AzbB<>":
                return self.assertion()
            return self.char(self.escape(in_class=False))
        self.i += 1
        if c == ".":
            self.require_unicode()
            # CRLF mode: `.` matches neither \r nor \n (unless `s`).
            crlf_dot = "R" in self.flags and "s" not in self.flags
            return self.char(r"[^\r\n]" if crlf_dot else ".")
        if c in "^$":
            if "m" in self.flags:
                self.line_anchors.add("crlf" if "R" in self.flags else "lf")
            return _Frag.of(c)
        return self.char(self.literal(c))

    def literal(self, c: str) -> str:
        """A literal character. Under `(?i-u)` case folding is ASCII's only: an ASCII letter
        is then a byte class ([Aa] as bytes), which Chroma refuses like any byte pattern,
        and any other character matches itself alone (RE2 would fold `é` with `É`)."""
        if "i" in self.flags and "u" not in self.flags:
            if c.isascii() and c.isalpha():
                self.require_unicode()
            if not c.isascii():
                return f"(?-i:{_literal(c)})"
        return _literal(c)

    def assertion(self) -> str:
        """An escaped zero-width assertion (after the backslash): \\A, \\z, \\b, \\B."""
        c = self.p[self.i]
        self.i += 1
        if c in "<>":
            raise self.fail(rf"\{c} word boundaries are not supported by huedb")
        if c == "b" and self.peek() == "{":
            raise self.fail(r"\b{...} word boundaries are not supported by huedb")
        if c in "bB":
            unicode = "u" in self.flags
            self.boundaries.add("unicode" if unicode else "ascii" if c == "b" else "ascii_not")
        return _Frag.of(f"\\{c}")

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
        return _Frag.of(f"{prefix}{body})", *_info(body))

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
            code = chr(self.hex_escape(_HEX_ESCAPES[c]))
            if "u" not in self.flags and not code.isascii():
                self.require_unicode()  # a byte past 0x7F: invalid UTF-8 in byte mode
            return _literal(code) if in_class else self.literal(code)
        if c.isascii() and c.isdigit():
            raise self.fail("backreferences are not supported")
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
        found = _re2_property(name)
        if found is None:
            raise self.fail(f"Unicode property {name!r} is not supported by huedb")
        body, complement = found
        if not negated:
            return body if in_class else f"[{body}]"
        if complement is not None:
            return complement if in_class else f"[{complement}]"
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
        singles: list[str] = []  # the members that were one character each
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
                singles.append(low)
        if "u" not in self.flags:
            one = len(items) == len(singles) == 1 and len(singles[0]) == 1 and not negated
            if one and singles[0].isascii():  # a class of one ASCII character is that literal
                return self.literal(singles[0])
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


class _Frag(str):
    """A translated fragment, with what RE2's limits need to know of it: `factor`, the
    largest product of the counts of nested counted repetitions in it (RE2 refuses one
    above MAX_REPEAT); `weight`, a lower bound of the instructions RE2 compiles it to (one
    per character it consumes); `consumes`, whether it can match a character at all."""

    factor: int = 1
    weight: int = 0
    consumes: bool = False

    @classmethod
    def of(cls, text: str, factor: int = 1, weight: int = 0, consumes: bool = False) -> _Frag:
        frag = cls(text)
        frag.factor, frag.weight, frag.consumes = factor, weight, consumes
        return frag


def _info(fragment: str) -> tuple[int, int, bool]:
    """(factor, weight, consumes) of a translated fragment (see `_Frag`)."""
    if isinstance(fragment, _Frag):
        return fragment.factor, fragment.weight, fragment.consumes
    return 1, 0, True  # not met: every atom is a _Frag; it may consume, RE2 counts nothing


class _FlagMark(_Frag):
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


def _re2_property(name: str) -> tuple[str, str | None] | None:
    """The RE2 class body of a Rust Unicode property name (loosely matched) and the body of
    its complement when one can stand inside a class (else None); None if not supported."""
    loose = name.replace(" ", "").replace("_", "").replace("-", "").lower()
    for prefix in ("generalcategory=", "gc=", "generalcategory:", "gc:"):
        if loose.startswith(prefix):
            loose = loose[len(prefix) :]
            break
    else:
        for prefix in ("script=", "sc=", "script:", "sc:"):
            if loose.startswith(prefix):
                return _script(name.split("=" if "=" in name else ":", 1)[1])
        # Rust looks a bare name up among the binary properties first.
        if loose in _BINARY_PROPERTIES:
            return _BINARY_PROPERTIES[loose]
    if loose in ("ascii", "assigned"):  # pseudo general categories, as in Rust
        return _BINARY_PROPERTIES[loose]
    if loose == "any":
        return _category("Any")
    for short in _SHORT_CATEGORIES:
        if short.lower() == loose:
            return _category(short)
    if loose in _GENERAL_CATEGORIES:
        names = _GENERAL_CATEGORIES[loose].split("}\\p{")
        if len(names) == 1:
            return _category(names[0])
        return "".join(f"\\p{{{n}}}" for n in names), None
    return _script(name)


def _category(name: str) -> tuple[str, str]:
    return f"\\p{{{name}}}", f"\\P{{{name}}}"


def _script(name: str) -> tuple[str, str] | None:
    words = name.replace("-", " ").replace("_", " ").split()
    canonical = "_".join(w[:1].upper() + w[1:].lower() for w in words)
    try:
        re2.compile(f"\\p{{{canonical}}}", _options())
    except re2.error:
        return None
    return _category(canonical)


def _translator(pattern: str, framed: bool = False) -> _Translator:
    """The translator of a pattern not too long (InvalidArgumentError otherwise)."""
    if len(pattern.encode("utf-8", "surrogatepass")) > MAX_PATTERN_BYTES:
        raise InvalidArgumentError(
            f"Invalid regex pattern: longer than {MAX_PATTERN_BYTES} bytes "
            f"(starts {pattern[:40]!r})"
        )
    return _Translator(pattern, framed)


def _too_large(pattern: str, detail: str = "") -> InvalidArgumentError:
    detail = detail or (
        f"it needs more than the {MAX_REGEX_MEMORY >> 20} MiB its regex engine (RE2) may "
        "use for one pattern"
    )
    return InvalidArgumentError(f"Regex pattern {pattern[:200]!r} is too large for huedb: {detail}")


def _re2_compile(pattern: str, translated: str) -> Any:
    try:
        return re2.compile(translated, _options())
    except re2.error as exc:
        # RE2's message is bytes (b'missing )'): shown as text, never as a bytes repr.
        detail = exc.args[0] if exc.args else ""
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        if "pattern too large" in str(detail) or "repetition size" in str(detail):
            raise _too_large(pattern) from None
        raise InvalidArgumentError(f"Invalid regex pattern {pattern[:200]!r}: {detail}") from None


@dataclass(frozen=True)
class CompiledPattern:
    """A `$regex` pattern compiled for RE2: `plain` for the document as it is and, when the
    pattern holds an assertion RE2 answers otherwise than Rust on some documents, `framed`
    for those documents' framed copies (`_frame`)."""

    plain: Any
    framed: Any | None = None
    unicode_words: bool = False  # frames carry Unicode word characters (else ASCII ones)
    frame_non_ascii: bool = False  # a non-ASCII document needs framing (word boundaries)
    crlf: bool = False  # a document holding \r needs framing (CRLF-mode ^ / $)

    def search(self, text: str) -> bool:
        """Whether the pattern occurs anywhere in text."""
        if self.framed is not None and (
            (self.frame_non_ascii and not text.isascii()) or (self.crlf and "\r" in text)
        ):
            return self.framed.search(_frame(text, self.unicode_words, self.crlf)) is not None
        return self.plain.search(text.encode("utf-8", "surrogatepass")) is not None


@functools.lru_cache(maxsize=_CACHE_SIZE)
def compile_pattern(pattern: str) -> CompiledPattern:
    """Compile a `$regex` pattern in Chroma's dialect (cached; InvalidArgumentError if refused)."""
    translator = _translator(pattern)
    plain = _re2_compile(pattern, translator.translate())
    # RE2's \b is ASCII and exact on an ASCII document; its \B also holds inside a
    # multi-byte character, where Rust never matches. Its multi-line ^ / $ know \n only.
    words = translator.boundaries - {"ascii"}
    crlf = translator.line_anchors == {"crlf"}
    if not words and not crlf:
        return CompiledPattern(plain)
    body = _translator(pattern, framed=True).translate()
    # Anchored at a frame's start (a frame is a marker, one character, a marker), so every
    # character of the pattern lines up with one of the document's.
    framed = _re2_compile(pattern, f"\\A(?s:{_MARK}.{_MARK})*?(?:{body})")
    unicode_words = "unicode" in words
    return CompiledPattern(plain, framed, unicode_words, bool(words), crlf)


def search(pattern: str, text: str | None) -> bool:
    """Whether the pattern occurs anywhere in text (find semantics); False for no text."""
    if text is None:
        return False
    return compile_pattern(pattern).search(text)


@functools.cache
def _markers(unicode_words: bool) -> np.ndarray:
    """The marker byte beside each code point in a framed document (one byte per code point):
    `_` for a word character of Rust's `\\w` (Unicode or ASCII), `\\n` for `\\n`, else `\\x01`."""
    markers = np.full(0x110000, _OTHER_MARK, dtype=np.uint8)
    if unicode_words:
        scalars = np.concatenate([np.arange(0xD800), np.arange(0xE000, 0x110000)])
        every_character = scalars.astype("<u4").tobytes().decode("utf-32-le")
        for match in re2.compile(f"[{_WORD}]+", _options()).finditer(every_character):
            start, end = match.span()
            markers[scalars[start:end]] = _WORD_MARK
    else:
        for low, high in ("09", "AZ", "__", "az"):
            markers[ord(low) : ord(high) + 1] = _WORD_MARK
    markers[0x0A] = _LINE_MARK
    return markers


def _frame(text: str, unicode_words: bool, crlf: bool) -> bytes:
    """The framed copy of a document, UTF-8: each character between two marker bytes.

    A marker is `_` beside a word character and `\\x01` beside another, so RE2's ASCII `\\b`
    between two frames tells a word boundary of Rust's (Unicode when `unicode_words`). A
    marker is `\\n` where a line ends: RE2's multi-line `$` tests the byte after, `^` the byte
    before. Without `crlf` that is each side of a `\\n`; with it, before every `\\r` and
    every `\\n` not after a `\\r`, after every `\\n` and every `\\r` not before a `\\n`
    (Rust's CRLF mode: never inside a `\\r\\n`). `\\r` and `\\n` are not word characters.
    """
    points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")
    before = _markers(unicode_words)[points]
    after = before
    if crlf:
        carriage_return = points == 0x0D
        after = before.copy()
        before[carriage_return] = after[carriage_return] = _LINE_MARK
        crlf_pair = carriage_return[:-1] & (points[1:] == 0x0A)
        after[:-1][crlf_pair] = before[1:][crlf_pair] = _OTHER_MARK
    framed = np.empty((len(points), 3), dtype="<u4")
    framed[:, 0], framed[:, 1], framed[:, 2] = before, points, after
    return framed.tobytes().decode("utf-32-le", "surrogatepass").encode("utf-8", "surrogatepass")
