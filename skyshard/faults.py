"""Fault injection for tests: named points where a test can make a process hang, wait or crash.

Crash-safety tests must interrupt a command at a chosen moment (between two shard renames, in the
middle of a backup, while a reader decodes a file). Production code marks such moments with
:func:`point`; it does nothing unless the environment variable :data:`FAULTS_ENV` selects that
point, which only tests do. This module is the one place that reads it.

Syntax of ``SKYSHARD_FAULTS``: rules separated by ``;``, each ``POINT[:SUBJECT]=ACTION``.
``POINT`` names a point (:data:`POINTS`); ``SUBJECT`` is a glob matched against the subject the
code passes (a file's base name, for instance), any subject when left out. Actions:

``hold:FILE``
    create ``FILE`` (the test waits for it instead of sleeping), then block until killed;
``sleep:SECONDS``
    pause, e.g. to slow every read so that a job is still running when a test looks;
``abort``
    end the process at once with ``SIGABRT``, as a crashing C decoder would.

Example: ``SKYSHARD_FAULTS='export.shard_renamed=hold:/tmp/t/renamed;read:bad.fits=abort'``.
"""

from __future__ import annotations

import fnmatch
import os
import threading
import time
from pathlib import Path

#: The environment variable tests set; never set outside tests.
FAULTS_ENV = "SKYSHARD_FAULTS"

#: Every point the code marks, and where it is.
POINTS = {
    "read": "a reader helper before it reads a file (subject: the file's base name)",
    "export.shard_renamed": "the export's driver after each shard got its final name",
    "file.in_place": "an atomic write after its file got its final name (subject: the base "
                     "name), e.g. each file of the trainer's backups",
    "sort.copy": "--sort-into --mode copy after each MiB copied to a frame's temporary file "
                 "(subject: the entry's base name)",
}


class FaultSpecError(ValueError):
    """A ``SKYSHARD_FAULTS`` rule that does not parse or names no known point."""


def parse(spec: str) -> list[tuple[str, str, str]]:
    """``[(point, subject_glob, action), ...]`` of a spec string; raises :class:`FaultSpecError`
    naming the rule that is wrong."""
    rules = []
    for rule in filter(None, (part.strip() for part in spec.split(";"))):
        target, sep, action = rule.partition("=")
        point, _, subject = target.partition(":")
        if not sep or point not in POINTS:
            raise FaultSpecError(f"{FAULTS_ENV} rule {rule!r}: expected POINT[:SUBJECT]=ACTION "
                                 f"with POINT one of {', '.join(POINTS)}")
        if not (action == "abort" or action.startswith(("hold:", "sleep:"))):
            raise FaultSpecError(f"{FAULTS_ENV} rule {rule!r}: action must be hold:FILE, "
                                 "sleep:SECONDS or abort")
        rules.append((point, subject or "*", action))
    return rules


def active() -> str:
    """The spec in this process's environment (``""`` when no fault is injected): what a parent
    passes on to helper processes it started before the test set it."""
    return os.environ.get(FAULTS_ENV, "")


def point(name: str, subject: str | None = None, spec: str | None = None) -> None:
    """A named moment in the code: act as the first matching rule of ``spec`` (default: the
    environment's) says, or do nothing. Costs one dictionary lookup when no fault is set."""
    spec = active() if spec is None else spec
    if not spec:
        return
    for rule_point, pattern, action in parse(spec):
        if rule_point == name and fnmatch.fnmatch(subject or "", pattern):
            _act(action)
            return


def _act(action: str) -> None:
    kind, _, argument = action.partition(":")
    if kind == "abort":
        os.abort()
    elif kind == "sleep":
        time.sleep(float(argument))
    elif kind == "hold":
        Path(argument).touch()
        threading.Event().wait()  # until the test kills the process
