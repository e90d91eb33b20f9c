"""Chunks are cut off the event loop, a bounded number per peer, and a failed cut costs only its reply."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

from core.snapshot import ChunkReply, ChunkRequest
from node.snapshot_serving import ChunkServer

ASKER, OTHER = b"a" * 32, b"b" * 32


def _reply(request: ChunkRequest) -> ChunkReply:
    return ChunkReply(request.height, request.start, request.limit, b"chunk:" + request.start)


class GatedCut:
    """A cut that waits for the test to open its gate, and records the thread it ran on."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.threads: set[int] = set()

    def __call__(self, request: ChunkRequest) -> ChunkReply:
        self.threads.add(threading.get_ident())
        if request.start == b"boom":
            raise RuntimeError("a bug while cutting")
        assert self.gate.wait(30)
        return _reply(request)


def test_the_loop_runs_while_a_chunk_is_cut_and_the_reply_follows() -> None:
    async def scenario() -> None:
        cut, sent = GatedCut(), asyncio.Queue[tuple[bytes, bytes]]()
        with ThreadPoolExecutor(1) as worker:
            server = ChunkServer(cut, lambda peer, payload: sent.put_nowait((peer, payload)) is None, worker)
            assert server.request(ASKER, ChunkRequest(7, b"k", None))
            # The cut is blocked on its gate, yet this coroutine (the event loop) goes on running.
            await asyncio.sleep(0)
            assert sent.empty() and server.in_flight == 1
            cut.gate.set()
            peer, payload = await asyncio.wait_for(sent.get(), 30)
        assert peer == ASKER and payload == _reply(ChunkRequest(7, b"k", None)).encode()
        assert threading.get_ident() not in cut.threads
        assert server.in_flight == 0

    asyncio.run(scenario())


def test_a_peer_over_its_cap_is_refused_and_counted_while_others_are_served() -> None:
    async def scenario() -> None:
        cut, refused, sent = GatedCut(), list[bytes](), asyncio.Queue[tuple[bytes, bytes]]()
        with ThreadPoolExecutor(1) as worker:
            server = ChunkServer(cut, lambda peer, payload: sent.put_nowait((peer, payload)) is None, worker,
                                 per_peer=2, total=3, on_refused=refused.append)
            accepted = [server.request(ASKER, ChunkRequest(1, bytes([i]), None)) for i in range(5)]
            assert accepted == [True, True, False, False, False] and refused == [ASKER] * 3
            assert server.request(OTHER, ChunkRequest(1, b"o", None))  # another peer still has room
            assert not server.request(OTHER, ChunkRequest(1, b"p", None))  # ... until the total is reached
            cut.gate.set()
            replies = [await asyncio.wait_for(sent.get(), 30) for _ in range(3)]
            assert sorted(peer for peer, _ in replies) == [ASKER, ASKER, OTHER]
            assert server.in_flight == 0
            assert server.request(ASKER, ChunkRequest(1, b"again", None))  # room again once cut
            await asyncio.wait_for(sent.get(), 30)

    asyncio.run(scenario())


def test_a_cut_that_raises_sends_nothing_and_frees_its_slot() -> None:
    async def scenario() -> None:
        cut, sent = GatedCut(), asyncio.Queue[tuple[bytes, bytes]]()
        cut.gate.set()
        with ThreadPoolExecutor(1) as worker:
            server = ChunkServer(cut, lambda peer, payload: sent.put_nowait((peer, payload)) is None, worker,
                                 per_peer=1)
            assert server.request(ASKER, ChunkRequest(1, b"boom", None))
            assert server.request(OTHER, ChunkRequest(1, b"fine", None))
            peer, _ = await asyncio.wait_for(sent.get(), 30)  # the worker runs jobs in order: boom went first
            assert peer == OTHER and sent.empty()
            assert server.in_flight == 0 and server.request(ASKER, ChunkRequest(1, b"next", None))
            await asyncio.wait_for(sent.get(), 30)

    asyncio.run(scenario())
