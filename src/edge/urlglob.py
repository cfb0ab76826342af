"""URL patterns: on which pages an experiment or a goal applies.

A pattern is a path glob matched against the pathname only (scheme, host, query and
fragment never take part). The published spec is ``docs/url-patterns.md``; the JS snippet
implements the same spec and both are checked against ``tests/vectors/urlglob.json``.

In short:

- no pattern (``None``, ``""`` or blank) matches every page;
- a plain pattern matches itself and everything below it on a segment boundary
  (``/checkout`` matches ``/checkout/step-2``, not ``/checkouts``);
- ``*`` is one whole non-empty segment, ``**`` is any number of segments (none included),
  and a pattern with a wildcard matches exactly, with no implicit "and below";
- pattern and path are split on ``/``, empty segments are dropped and each segment is
  percent-decoded when it decodes cleanly; matching is case-sensitive.

A pattern is validated and compiled once (`compile_pattern`), per config version; the
resulting `UrlMatcher` is immutable and does one regex ``fullmatch`` per call.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import urlsplit

from edge.errors import InvalidUrlPattern

__all__ = [
    "MAX_PATTERN_LENGTH",
    "MAX_SEGMENTS",
    "UrlMatcher",
    "compile_pattern",
    "normalize_path",
    "pathname_of",
    "validate_pattern",
]

MAX_PATTERN_LENGTH: Final = 2048
"""Longest accepted pattern, in characters (code points)."""

MAX_SEGMENTS: Final = 64
"""Most non-empty path segments an accepted pattern may have."""

# Regex building blocks over the normalised path ("/seg1/seg2", root = "").
_ONE_SEGMENT: Final = "/[^/]+"
_ANY_DEPTH: Final = "(?:/[^/]+)*"
_ANY_DEPTH_LAZY: Final = "(?:/[^/]+)*?"

# What JS String.prototype.trim() removes: WhiteSpace and LineTerminator.
_BLANK_CHARS: Final = (
    r"\t\n\x0b\x0c\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)
_BLANK: Final = re.compile(f"[{_BLANK_CHARS}]*")
# Whitespace as above, plus the C0 and C1 control characters and DEL.
_FORBIDDEN_CHAR: Final = re.compile(f"[{_BLANK_CHARS}\\x00-\\x1f\\x7f-\\x9f]")
_SCHEME: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
_BAD_PERCENT: Final = re.compile(r"%(?![0-9A-Fa-f]{2})")
_ESCAPE_RUN: Final = re.compile(r"(?:%[0-9A-Fa-f]{2})+")


class UrlMatcher:
    """A compiled url_pattern: answers "does this pattern apply to that page?".

    Build it once per config version with `compile_pattern` (or ``UrlMatcher(pattern)``,
    which validates the same way) and call `matches` on the hot path. Instances are
    immutable, hashable and compare equal when their canonical patterns are equal.

    Attributes:
        pattern: The canonical pattern (see `validate_pattern`), ``None`` for "every page".
    """

    __slots__ = ("_pattern", "_regex")

    _pattern: str | None
    _regex: re.Pattern[str] | None

    def __init__(self, pattern: str | None = None) -> None:
        canonical = validate_pattern(pattern)
        source = None if canonical is None else _regex_source(canonical)
        regex = None if source is None or source == _ANY_DEPTH else re.compile(source)
        object.__setattr__(self, "_pattern", canonical)
        object.__setattr__(self, "_regex", regex)

    @property
    def pattern(self) -> str | None:
        """The canonical pattern (see `validate_pattern`), ``None`` for "every page"."""
        return self._pattern

    def matches(self, pathname: str) -> bool:
        """Whether the page at ``pathname`` is in scope.

        ``pathname`` is a path such as ``location.pathname`` (``/blog/post``); a query or
        fragment left on it is treated as part of the last segment, so pass full URLs
        through `pathname_of` first. Never raises for any string.
        """
        regex = self._regex
        if regex is None:  # no pattern, "/" or "/**": every page
            return True
        return regex.fullmatch(normalize_path(pathname)) is not None

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __reduce__(self) -> tuple[type[UrlMatcher], tuple[str | None]]:
        return (type(self), (self.pattern,))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, UrlMatcher):
            return NotImplemented
        return self.pattern == other.pattern

    def __hash__(self) -> int:
        return hash((UrlMatcher, self.pattern))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.pattern!r})"


def compile_pattern(pattern: str | None) -> UrlMatcher:
    """Validate ``pattern`` and compile it into a `UrlMatcher`.

    Raises:
        InvalidUrlPattern: ``pattern`` breaks one of the rules of `validate_pattern`.
    """
    return UrlMatcher(pattern)


def validate_pattern(pattern: str | None) -> str | None:
    """Check ``pattern`` and return its canonical form.

    The canonical form has no empty segments (no trailing or duplicate slashes) and no
    consecutive ``**`` segments (they collapse into one); it is ``"/"`` for the root and
    ``None`` when there is no pattern (``None``, empty or blank). Segments keep their
    percent-encoding as written. ``validate_pattern(validate_pattern(p)) ==
    validate_pattern(p)`` always holds.

    Raises:
        InvalidUrlPattern: with a message that says what to change. A pattern is rejected
            when it is longer than `MAX_PATTERN_LENGTH`, contains whitespace or a control
            character, does not start with ``/`` (a full URL included), contains ``?`` or
            ``#``, has more than `MAX_SEGMENTS` segments, or has a segment that mixes
            ``*`` with other characters (``/report-*``, ``/***``).
    """
    if pattern is None:
        return None
    if not isinstance(pattern, str):
        raise InvalidUrlPattern(
            f"url_pattern must be a string such as '/pricing' or null, not {type(pattern).__name__}"
        )
    if _BLANK.fullmatch(pattern):
        return None
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise InvalidUrlPattern(
            f"url_pattern is {len(pattern)} characters long; at most {MAX_PATTERN_LENGTH} are "
            "allowed. Use '*' or '**' segments instead of spelling out long paths"
        )
    bad = _FORBIDDEN_CHAR.search(pattern)
    if bad is not None:
        code = ord(bad.group())
        escaped = "".join(f"%{byte:02X}" for byte in bad.group().encode("utf-8", "replace"))
        raise InvalidUrlPattern(
            f"url_pattern {_show(pattern)} contains whitespace or a control character "
            f"(U+{code:04X}) at position {bad.start()}; remove it, or percent-encode it as "
            f"{escaped!r} if the path really contains it"
        )
    if not pattern.startswith("/"):
        if _looks_like_url(pattern):
            raise InvalidUrlPattern(
                "url_pattern is matched against the path only; drop the scheme and host, e.g. "
                f"'/pricing' (use {_show(_url_path(pattern))} instead of {_show(pattern)})"
            )
        raise InvalidUrlPattern(
            f"url_pattern must start with '/' because it is matched against the page path, "
            f"e.g. '/pricing': use {_show('/' + _strip_query(pattern))} instead of {_show(pattern)}"
        )
    for char, part in (("?", "query string"), ("#", "fragment")):
        if char in pattern:
            raise InvalidUrlPattern(
                f"url_pattern cannot contain {char!r}: the {part} is not matched, only the "
                f"path is; use {_show(_strip_query(pattern) or '/')} instead of {_show(pattern)}"
            )
    segments = [segment for segment in pattern.split("/") if segment]
    if len(segments) > MAX_SEGMENTS:
        raise InvalidUrlPattern(
            f"url_pattern has {len(segments)} path segments; at most {MAX_SEGMENTS} are "
            "allowed. Use '**' to match any depth instead of spelling out every segment"
        )
    canonical: list[str] = []
    for index, segment in enumerate(segments):
        if "*" in segment and segment not in ("*", "**"):
            stem = segment.partition("*")[0].rstrip("-_.~")
            base = "".join("/" + s for s in [*segments[:index], stem] if s)
            raise InvalidUrlPattern(
                f"url_pattern {_show(pattern)}: '*' must be a whole path segment, not part of "
                f"{segment!r}; use "
                f"{base + '/*'!r} for exactly one segment or {base + '/**'!r} for any depth "
                "('*' matches one segment, '**' any number of segments)"
            )
        if segment == "**" and canonical and canonical[-1] == "**":
            continue
        canonical.append(segment)
    return "".join("/" + segment for segment in canonical) or "/"


def normalize_path(pathname: str) -> str:
    """The string a pattern's regex is matched against: ``"/seg1/seg2"``, ``""`` for the root.

    ``pathname`` is split on ``/`` and empty segments are dropped, so trailing and duplicate
    slashes do not matter. Each segment is percent-decoded as UTF-8 when every ``%`` in it
    starts a ``%XX`` escape, the bytes are valid UTF-8 and the result contains no ``/``;
    otherwise the segment is kept as written (like a JS ``decodeURIComponent`` that threw).
    ``.`` and ``..`` are ordinary segments: nothing is resolved. Never raises.
    """
    segments = [segment for segment in pathname.split("/") if segment]
    if "%" in pathname:
        segments = [_decode_segment(segment) for segment in segments]
    return "".join("/" + segment for segment in segments)


def pathname_of(url_or_path: str) -> str:
    """The path of an http(s) URL or of a path that may carry a query or fragment.

    ``"https://shop.example:8443/cart?x=1#top"`` gives ``"/cart"``, ``"https://shop.example"``
    gives ``"/"`` and ``"/cart?x=1"`` gives ``"/cart"``. Input that starts with ``/`` is a
    path, so ``"//cart"`` is the path ``//cart``, not a protocol-relative URL. The path is
    returned as written (still percent-encoded); `UrlMatcher.matches` normalises it.
    """
    if url_or_path.startswith("/"):
        path = _strip_query(url_or_path)
    else:
        try:
            path = urlsplit(url_or_path).path
        except ValueError:  # e.g. a malformed IPv6 host: no path to speak of
            path = ""
    return path or "/"


def _regex_source(canonical: str) -> str:
    """Regex source of a canonical pattern, per the spec in docs/url-patterns.md.

    A literal segment is ``"/" + re.escape(decoded segment)``, ``*`` is ``/[^/]+`` and
    ``**`` is ``(?:/[^/]+)*``; a plain pattern ends with ``(?:/[^/]+)*``. With two or more
    ``**``, all but the last are written ``(?>(?:/[^/]+)*?BLOCK)``, where BLOCK is what
    follows up to the next ``**``: the earliest place where a fixed-length block matches is
    always a right one, so committing to it matches the same paths as the plain regex
    without its O(n**k) backtracking on long paths.
    """
    segments = [segment for segment in canonical.split("/") if segment]
    blocks: list[str] = [""]  # the regex of the segments between "**" segments
    for segment in segments:
        if segment == "**":
            blocks.append("")
        elif segment == "*":
            blocks[-1] += _ONE_SEGMENT
        else:
            blocks[-1] += "/" + re.escape(_decode_segment(segment))
    if len(blocks) == 1:  # no "**": exact if it has a "*", else also everything below
        return blocks[0] if "*" in segments else blocks[0] + _ANY_DEPTH
    first, *middle, last = blocks
    committed = "".join(f"(?>{_ANY_DEPTH_LAZY}{block})" for block in middle)
    return first + committed + _ANY_DEPTH + last


def _decode_segment(segment: str) -> str:
    """Percent-decode one path segment, or return it unchanged if it does not decode cleanly."""
    if "%" not in segment or _BAD_PERCENT.search(segment):
        return segment
    try:
        decoded = _ESCAPE_RUN.sub(_decode_escape_run, segment)
    except UnicodeDecodeError:
        return segment
    return segment if "/" in decoded else decoded


def _decode_escape_run(run: re.Match[str]) -> str:
    return bytes.fromhex(run.group().replace("%", "")).decode("utf-8")


def _looks_like_url(pattern: str) -> bool:
    """``https://host/x``, ``localhost:8080/x`` or ``www.host.com/x``: a URL, not a path."""
    if "://" in pattern or _SCHEME.match(pattern):
        return True
    host, slash, _ = pattern.partition("/")
    return bool(slash) and "." in host and "*" not in host


def _url_path(url: str) -> str:
    """The path part of a pattern written as a URL, for the error message."""
    rest = url.partition("://")[2] or url
    path = rest[len(rest.partition("/")[0]) :]
    return _strip_query(path) or "/"


def _strip_query(url: str) -> str:
    """``url`` without its query and fragment."""
    return url.partition("#")[0].partition("?")[0]


def _show(pattern: str) -> str:
    """``pattern`` quoted for an error message, shortened if long."""
    return repr(pattern if len(pattern) <= 80 else pattern[:77] + "...")
