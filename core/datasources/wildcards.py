"""Tests of one text value against a QIDO wildcard or a fuzzy person-name query, each linear.

:mod:`datasources.matching` builds them once per query and runs them over every record, so
they avoid backtracking regexes (a hostile pattern cannot make them slow) and do the common
refusals with ``str`` methods in C.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

__all__ = ["fuzzy_name_tester", "wildcard"]


def _segment_finder(segment: str) -> Callable[[str, int, int], int]:
    """``find(text, start, end)`` for a piece of a pattern between ``*``: the first position at
    which it matches, or -1. ``?`` is any one character. A regex without quantifiers cannot
    backtrack: each search costs at most ``len(text) x len(segment)`` steps."""
    if "?" not in segment:
        return lambda text, start, end: text.find(segment, start, end)
    search = re.compile("".join("." if c == "?" else re.escape(c) for c in segment), re.DOTALL).search

    def find(text: str, start: int, end: int) -> int:
        found = search(text, start, end)
        return found.start() if found else -1

    return find


def wildcard(pattern: str) -> Callable[[str], bool]:
    """A whole-value wildcard test (``*`` any run, ``?`` any one character), linear in
    ``len(value) x len(pattern)`` whatever the pattern: the pieces between ``*`` have fixed
    lengths, so the first and the last are anchored and each middle one is taken at its
    leftmost place (taking it further right never helps the pieces after it)."""
    pieces = pattern.split("*")
    if len(pieces) == 1:
        exact = _segment_finder(pattern)
        size = len(pattern)
        return lambda text: len(text) == size and exact(text, 0, size) == 0
    head, tail = pieces[0], pieces[-1]
    middle = [(len(p), _segment_finder(p)) for p in pieces[1:-1] if p]
    head_find, tail_find = _segment_finder(head), _segment_finder(tail)
    fixed = len(head) + len(tail)
    least = fixed + sum(size for size, _ in middle)

    def test(text: str) -> bool:
        n = len(text)
        if n < least:
            return False
        if head and head_find(text, 0, len(head)) != 0:
            return False
        end = n - len(tail)
        if tail and tail_find(text, end, n) != end:
            return False
        position = len(head)
        for size, find in middle:
            found = find(text, position, end)
            if found < 0:
                return False
            position = found + size
        return True

    return test


_NAME_SPLIT = re.compile(r"[\s^,=]+")
# the name separators that are not whitespace, as spaces: then str.split() (which splits on
# exactly the characters \s matches) gives the words _NAME_SPLIT would
_NAME_SEPARATORS = str.maketrans("^,=", "   ")


def fuzzy_name_tester(parts: list[str]) -> Callable[[Any], bool]:
    """Every word of some query value must begin some word of the name (``lee ann`` matches
    ``LEE^ANNA``). Such a word is a substring of the name, and so is each piece of one between
    ``?``: a name lacking one is refused by ``in`` alone. Otherwise the name is split into words
    once; a word without ``?`` begins one of them when ``" " + word`` is in ``" "`` + the words
    joined by spaces, and one with ``?`` is tested against each word."""
    queries: list[tuple[tuple[str, ...], tuple[str, ...], tuple[Callable[[str], bool], ...]]] = []
    for part in parts:
        tokens = [t for t in _NAME_SPLIT.split(part.replace("*", " ").casefold()) if t]
        needles = tuple(piece for t in tokens for piece in t.split("?") if piece)
        spaced = tuple(" " + t for t in tokens if "?" not in t)
        queries.append((needles, spaced, tuple(wildcard(t + "*") for t in tokens if "?" in t)))

    def test(value: Any) -> bool:
        text = (value if value.__class__ is str else str(value)).casefold()
        words: list[str] | None = None
        joined = ""
        for needles, spaced, wild in queries:
            if not _all_in(needles, text):
                continue
            if words is None:
                words = text.translate(_NAME_SEPARATORS).split()
                joined = " " + " ".join(words)
            if _all_in(spaced, joined) and all(any(w_test(w) for w in words) for w_test in wild):
                return True
        return False

    return test


def _all_in(needles: tuple[str, ...], text: str) -> bool:
    for needle in needles:
        if needle not in text:
            return False
    return True
