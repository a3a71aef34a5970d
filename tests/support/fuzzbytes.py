"""Choices read from one Hypothesis byte string: structured inputs for 10,000-example suites.

A composite strategy makes dozens of draws per example (milliseconds each on this machine);
one ``st.binary()`` draw read by :class:`Choices` costs a tenth of that, and still shrinks
well: fewer and smaller bytes give fewer, earlier choices (the first item of each pool).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")

# examples of each suite's main property: 10,000 in CI (CI=true, as .ci/run runs), 2,000 in a
# developer's run of the whole suite; FUZZ_EXAMPLES sets it either way
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES") or (10_000 if os.environ.get("CI") else 2_000))


class Choices:
    """Reads choices from ``data`` in order; past its end every choice is the first."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.position = 0

    def byte(self) -> int:
        if self.position >= len(self.data):
            return 0
        value = self.data[self.position]
        self.position += 1
        return value

    def below(self, n: int) -> int:
        """0 <= result < n (n <= 65536)."""
        if n <= 1:
            return 0
        value = self.byte() if n <= 256 else self.byte() << 8 | self.byte()
        return value % n

    def flag(self) -> bool:
        return bool(self.byte() & 1)

    def pick(self, pool: Sequence[T]) -> T:
        return pool[self.below(len(pool))]

    def text(self, alphabet: str, most: int) -> str:
        return "".join(self.pick(alphabet) for _ in range(self.below(most + 1)))

    def chunk(self, most: int) -> bytes:
        size = self.below(most + 1)
        out = self.data[self.position : self.position + size]
        self.position += size
        return out
