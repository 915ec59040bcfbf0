"""The check of randomized consistency runs: no read answers what an acknowledged write replaced.

Writers set a text of each key (an article's title, a tag's name) to increasing versions,
``"<anything> v<n>"``; once a write is answered, its version is *acknowledged*. A reader takes
the floors (the acknowledged version of every key) just before it sends a read, and every
version the answer shows must be at least its key's floor: a read may overlap writes and show
any of their versions, but never one that a write answered before the read began replaced.

One :class:`AcknowledgedVersions` is shared by the writer and reader tasks of one event loop
(not thread-safe); time is ``time.monotonic()`` seconds.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

#: the version at the end of every text a writer sets: ``"alpha v12"``
VERSION: Final = re.compile(r" v(\d+)$")


def version_of(text: str) -> int:
    """Return the version at the end of ``text`` (``"alpha v12"`` -> 12).

    Raises:
        AssertionError: ``text`` ends with no version (no writer of the run set it).
    """
    match = VERSION.search(text)
    assert match is not None, f"no version in {text!r}"
    return int(match[1])


@dataclass(frozen=True)
class Floors:
    """The acknowledged version of every key when a read began, and when that was."""

    versions: dict[str, int]
    taken_at: float  # time.monotonic() seconds


@dataclass(frozen=True)
class Violation:
    """A read that showed a version older than its key's floor."""

    where: str  # what was read, through what, and how it was answered
    key: str
    seen: int
    floor: int
    after_ack_ms: float  # how long after the floor's acknowledgement the read began

    def __str__(self) -> str:
        return (
            f"{self.where}: {self.key} v{self.seen} read {self.after_ack_ms:.1f} ms after"
            f" v{self.floor} was acknowledged"
        )


@dataclass
class AcknowledgedVersions:
    """The acknowledged version of each key, and every violation found against them.

    Attributes:
        checked: versions compared with their floor (a list read checks several).
        violations: every version found below its floor, in the order found.
    """

    keys: Iterable[str]
    checked: int = 0
    violations: list[Violation] = field(default_factory=list)
    _versions: dict[str, int] = field(init=False)
    _acknowledged_at: dict[tuple[str, int], float] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._versions = dict.fromkeys(self.keys, 0)
        for key in self._versions:
            self._acknowledged_at[(key, 0)] = time.monotonic()

    def acknowledge(self, key: str, version: int) -> None:
        """Record that the write of ``version`` of ``key`` was answered (now)."""
        self._acknowledged_at[(key, version)] = time.monotonic()
        self._versions[key] = max(self._versions[key], version)

    def floors(self) -> Floors:
        """Return the floors of a read that begins now (take them just before sending it)."""
        return Floors(dict(self._versions), time.monotonic())

    def latest(self, key: str) -> int:
        """Return the acknowledged version of ``key`` now."""
        return self._versions[key]

    def check(self, floors: Floors, key: str, text: str, where: str) -> bool:
        """Compare the version at the end of ``text`` with ``key``'s floor; record a violation.

        Returns:
            True when the version is at least the floor.

        Raises:
            AssertionError: ``text`` ends with no version, or ``key`` is not one of the run's.
        """
        seen, floor = version_of(text), floors.versions[key]
        self.checked += 1
        if seen >= floor:
            return True
        acknowledged = self._acknowledged_at[(key, floor)]
        after_ms = (floors.taken_at - acknowledged) * 1000
        self.violations.append(Violation(where, key, seen, floor, after_ms))
        return False

    def summary(self, shown: int = 5) -> str:
        """Return the count of violations, what was read, and the first ``shown`` of them."""
        places = sorted({v.where.split(":")[0] for v in self.violations})
        first = "; ".join(str(v) for v in self.violations[:shown])
        return f"{len(self.violations)} violations of {self.checked} checks in {places}: {first}"
