"""A validator's report of its own crash: a marker written on the way down, a signed alert once it is back.

Crash-only supervision (:mod:`node.runtime`) stops the process at the first
failed task, before anything the validator could sign about it would commit.
So the failure is written to ``<data>/crash.json`` as the process exits: the
task's name, the error's class and code, and the time; never the message,
which may carry paths or a peer's bytes. On the next start the validator
posts one ``validator_task_failed`` alert (severity 4, about its own key,
which ``ids.alerts`` insists on) per failure on record, and deletes the marker
only once committed state holds every one of them; until then it offers them
again every :data:`RETRY_BLOCKS` blocks, and a restart in between starts over
from the marker (the alerts' dedupe keys make a second copy a refused no-op).
A failure to write the marker (a full disk) is logged, never raised: the
process is stopping for a reason of its own already.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from core import codec
from core.errors import FbciError, TaskFailed
from core.hashing import sha256
from ids.alerts import SCORE_ONE, SEVERITY_CRITICAL, AlertPayload

log = logging.getLogger(__name__)

MARKER = "crash.json"
MAX_CRASHES = 16
"""Failures kept on record while their alerts are not committed (a crash loop keeps its latest ones)."""
RETRY_BLOCKS = 50
TASK_FAILED_CLASS = "validator_task_failed"


@dataclass(frozen=True)
class Crash:
    task: str
    error: str
    """The exception's class name."""
    code: int
    """Its stable code: a storage error's own, any other's :class:`core.errors.TaskFailed` code."""
    time_ms: int

    @classmethod
    def of(cls, task: str, error: BaseException, time_ms: int) -> Crash:
        code = error.code if isinstance(error, FbciError) else TaskFailed.code
        return cls(task, type(error).__name__, code, time_ms)

    def alert(self, hospital: str, signer: bytes) -> AlertPayload:
        digest = sha256(codec.encode([self.task, self.error, self.code]))
        return AlertPayload(hospital=hospital, subject_kind="validator", subject=signer, alert_class=TASK_FAILED_CLASS,
                            severity=SEVERITY_CRITICAL, window_start_ms=self.time_ms, window_ms=1, count=1,
                            score_ppm=SCORE_ONE, feature_digest=digest, model_version=0)


def read_crashes(data: Path) -> list[Crash]:
    path = data / MARKER
    try:
        doc = json.loads(path.read_text())
        return [Crash(str(c["task"]), str(c["error"]), int(c["code"]), int(c["time_ms"])) for c in doc["crashes"]]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring the unreadable crash marker %s: %s", path, exc)
        return []


def record_crash(data: Path, crash: Crash) -> None:
    """Add ``crash`` to the marker (written to a temporary file, fsynced, then renamed over it)."""
    crashes = [*read_crashes(data), crash][-MAX_CRASHES:]
    path, tmp = data / MARKER, data / (MARKER + ".tmp")
    try:
        with open(tmp, "w") as out:
            json.dump({"crashes": [asdict(c) for c in crashes]}, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        log.error("could not write the crash marker %s, so no alert will say this validator failed: %s", path, exc)
        return
    log.info("recorded the failure of task %s in %s; the next start reports it on chain", crash.task, path)


class CrashReporter:
    """Offers the alerts for the crashes on record and clears the marker once they are all committed.

    ``offer``: sign and submit one alert (the validator's own-transaction queue);
    ``recorded``: whether committed state holds an alert (``ids.alerts.is_recorded``).
    """

    def __init__(self, data: Path, hospital: str, signer: bytes, offer: Callable[[AlertPayload], None],
                 recorded: Callable[[AlertPayload], bool]) -> None:
        self._data = data
        self._offer = offer
        self._recorded = recorded
        self._pending = [c.alert(hospital, signer) for c in read_crashes(data)]
        self._since_offer = 0

    @property
    def pending(self) -> int:
        return len(self._pending)

    def start(self) -> None:
        if self._pending and not self._settled():
            for alert in self._pending:
                self._offer(alert)

    def on_commit(self, *_: object) -> None:
        """A ledger commit observer: clear the marker once every alert is on chain, else retry now and then."""
        if not self._pending or self._settled():
            return
        self._since_offer += 1
        if self._since_offer >= RETRY_BLOCKS:
            self._since_offer = 0
            for alert in self._pending:
                self._offer(alert)

    def _settled(self) -> bool:
        self._pending = [a for a in self._pending if not self._recorded(a)]
        if self._pending:
            return False
        (self._data / MARKER).unlink(missing_ok=True)
        log.info("this validator's failure alerts are committed; cleared its crash marker")
        return True
