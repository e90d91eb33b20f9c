"""Rebuilding what a replica signed from its WAL, so that after a crash it cannot sign anything else.

Pure: the node reads the records from disk and hands them over in ``Start``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core import codec
from core.errors import DecodeError, InvalidInput

from consensus.certificates import PreparedCertificate
from consensus.events import WAL_PREPARED, WalRecord
from consensus.messages import CommitProof, SignedMessage, ViewChange, decode_message

Slot = tuple[int, str, int]


@dataclass(frozen=True)
class Recovered:
    signed: dict[Slot, SignedMessage]
    prepared: PreparedCertificate | None
    view: int
    in_view_change: bool

    def current(self, height: int) -> list[SignedMessage]:
        """What was signed last (in the recovered view), in WAL order: to re-send after restart."""
        return [m for (h, _, v), m in self.signed.items() if h == height and v == self.view]


def recover(records: Sequence[WalRecord], height: int) -> Recovered:
    """Raise ``InvalidInput`` on a record that does not decode: a WAL the node let rot is not guessed at."""
    signed: dict[Slot, SignedMessage] = {}
    prepared: PreparedCertificate | None = None
    for record in records:
        if record.height < height:
            continue
        try:
            if record.kind == WAL_PREPARED:
                cert = PreparedCertificate.from_value(codec.decode(record.payload))
                if cert.height == height and (prepared is None or cert.view > prepared.view):
                    prepared = cert
                continue
            msg = decode_message(record.payload)
        except DecodeError as exc:
            raise InvalidInput(f"WAL record at height {record.height} does not decode: {exc.message}") from None
        if isinstance(msg, CommitProof):
            raise InvalidInput("WAL holds an unsigned message")
        signed[(msg.height, msg.kind, msg.view)] = msg
    here = [m for (h, _, _), m in signed.items() if h == height]
    view = max((m.view for m in here), default=0)
    in_view_change = view > 0 and all(isinstance(m, ViewChange) for m in here if m.view == view)
    return Recovered(signed, prepared, view, in_view_change)
