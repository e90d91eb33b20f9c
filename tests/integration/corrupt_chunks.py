"""A validator that is honest in everything but the state-sync chunks it serves: one byte of each proof
flipped. ``python -m tests.integration.corrupt_chunks node start --home DIR``; the test hook lives here, in
tests/, so no production code carries a switch that makes a validator lie."""

from __future__ import annotations

import sys
from dataclasses import replace

from core.snapshot import ChunkReply, ChunkRequest
from node.snapshots import SnapshotServer

_honest_chunk = SnapshotServer.chunk


def _corrupt_chunk(self: SnapshotServer, request: ChunkRequest) -> ChunkReply:
    reply = _honest_chunk(self, request)
    if reply.chunk is None:
        return reply
    flipped = bytearray(reply.chunk)
    flipped[-1] ^= 1
    return replace(reply, chunk=bytes(flipped))


if __name__ == "__main__":
    SnapshotServer.chunk = _corrupt_chunk  # type: ignore[method-assign]
    from cli.main import main

    sys.exit(main(sys.argv[1:]))
