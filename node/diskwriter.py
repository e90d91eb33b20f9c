"""One ordered writer thread for the node's synced disk writes, so no fsync blocks the event loop.

An fsync takes milliseconds (tens on a loaded disk); inline on the event loop
it stalls every peer link and RPC call for that long. The consensus WAL
appends, the WAL compactions and the LevelDB sync that makes a committed
block durable all go through one :class:`DiskWriter` instead, which runs them
one at a time, in the order they were submitted, on a single thread.

Ordering is the point, so it is kept twice over:

- on disk: jobs run strictly first-in first-out, so a job's writes are durable
  after those of every job submitted before it (a block's sync after the WAL
  records that voted for it, a compaction after the block it drops records of);
- on the loop: a job's future completes, and its ``then`` callback runs, on the
  event loop in the same first-in first-out order. Callers that must not let
  anything leave the process before a write is durable (a vote, a commit
  notice) await the future, or do that work in ``then``.

Housekeeping that nothing waits on (compacting the WAL) is submitted with
:meth:`DiskWriter.submit_idle`: it runs when the queue is empty, so it never
delays a vote, and a newer one replaces one not yet run. It still runs after
every job submitted before it, and runs anyway once ``IDLE_AFTER`` jobs have
passed it, so a writer that is never idle cannot starve it.

A failed job's future carries its exception (``DiskFull``, ``StorageError``);
every later job still runs in order, and its caller sees its own outcome.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any

Job = tuple[Callable[[], Any], "asyncio.Future[Any]", Callable[[], None] | None]
IDLE_AFTER = 64


_WAKE: Job = (lambda: None, None, None)  # type: ignore[assignment]  # wakes the thread; runs nothing


class DiskWriter:
    """Created on the event loop that awaits it; :meth:`close` after the last job."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._last: asyncio.Future[Any] | None = None
        self._idle: Job | None = None
        self._idle_lock = threading.Lock()
        self.failure: BaseException | None = None
        """The first job's error, if one failed: every later job fails with it unrun (a disk that failed
        once is not written past, so nothing can become durable out of order)."""

    def submit(self, write: Callable[[], Any], then: Callable[[], None] | None = None) -> asyncio.Future[Any]:
        """Queue ``write``; ``then`` runs on the loop right after it succeeded, before any later job's ``then``."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._start(loop)
        self._jobs.put((write, future, then))
        self._last = future
        return future

    def submit_idle(self, write: Callable[[], Any]) -> asyncio.Future[Any]:
        """Queue housekeeping: run when the writer is idle, replacing (and resolving) an older one not yet run."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._idle_lock:
            replaced, self._idle = self._idle, (write, future, None)
        if replaced is not None and not replaced[1].done():
            replaced[1].set_result(None)  # superseded: the newer job does its work and more
        self._start(loop)
        self._jobs.put(_WAKE)  # in case the thread is waiting on an empty queue
        return future

    async def run(self, write: Callable[[], Any]) -> Any:
        return await self.submit(write)

    async def drained(self) -> None:
        """Return once every job submitted so far has succeeded; raise :attr:`failure` if one failed."""
        if self._last is not None and not self._last.done():
            await asyncio.wait([self._last])
        if self.failure is not None:
            raise self.failure

    def close(self) -> None:
        """Let the thread finish the queued jobs and end; it is a daemon, so a stuck disk cannot hang exit."""
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join(timeout=10)
            self._thread = None

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, args=(loop,), name="disk-writer", daemon=True)
            self._thread.start()

    def _next(self, passed: int) -> Job | None:
        """The next queued job; the idle one when the queue is empty or it has waited IDLE_AFTER jobs."""
        if passed < IDLE_AFTER:
            while True:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is not _WAKE:
                    return job
        while True:
            with self._idle_lock:
                idle, self._idle = self._idle, None
            if idle is not None:
                return idle
            if (job := self._jobs.get()) is not _WAKE:
                return job

    def _work(self, loop: asyncio.AbstractEventLoop) -> None:
        failed: BaseException | None = None
        passed = 0
        while (job := self._next(passed)) is not None:
            write, future, then = job
            with self._idle_lock:
                passed = passed + 1 if self._idle is not None else 0
            result, error = None, failed
            if failed is None:
                try:
                    result = write()
                except BaseException as exc:  # handed to the awaiting caller, never lost in this thread
                    error = failed = exc
            try:
                loop.call_soon_threadsafe(self._finish, future, result, error, then)
            except RuntimeError:  # the loop is closed: nobody is left to tell
                return

    def _finish(self, future: asyncio.Future[Any], result: Any, error: BaseException | None,
                then: Callable[[], None] | None) -> None:
        if error is not None and self.failure is None:
            self.failure = error
        if future.cancelled():
            return
        if error is not None:
            future.set_exception(error)
            return
        try:
            if then is not None:
                then()
        except Exception as exc:  # the awaiting caller sees it, as it would an error of the write itself
            future.set_exception(exc)
            return
        future.set_result(result)
