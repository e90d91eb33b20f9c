"""Per-member storage quotas: no one sender can fill the chain, and so every validator's disk, alone.

Every byte of a block is stored by every validator forever, whatever its
transactions' outcome, so the bound is on bytes included, not on bytes that
succeed. Genesis sets two budgets per sender: ``member_block_bytes`` in one
block and ``member_window_bytes`` in one window of ``quota_window_blocks``
heights. The usage of each sender is kept in state (``quota/<sender>`` ->
window and bytes, 8 bytes big endian each: read for every sender of every
block, so it is not worth a codec round trip), charged by execution at the end of each block, so it
is deterministic like everything else; a proposer leaves a sender's
transactions past its budget for a later block (:func:`fit`), a validator
refuses a block that breaks a budget (:func:`check_block`), and CheckTx
refuses a transaction that cannot fit in its sender's window any more.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from core.errors import InvalidInput, QuotaExceeded
from core.state import StateView
from core.tx import sender_of
from genesis.schema import ChainParams

PREFIX = b"quota/"


@dataclass(frozen=True)
class MemberQuota:
    block_bytes: int
    window_bytes: int
    window_blocks: int

    @classmethod
    def from_params(cls, p: ChainParams) -> MemberQuota:
        return cls(p.member_block_bytes, p.member_window_bytes, p.quota_window_blocks)

    def window(self, height: int) -> int:
        return height // self.window_blocks

    def used(self, state: StateView, sender: bytes, height: int) -> int:
        """Bytes ``sender`` has committed in the window of ``height``, before that block."""
        raw = state.get(PREFIX + sender)
        if raw is None or int.from_bytes(raw[:8], "big") != self.window(height):
            return 0
        return int.from_bytes(raw[8:], "big")

    def check_tx(self, state: StateView, sender: bytes, size: int, height: int) -> None:
        """CheckTx's part: refuse a transaction its sender's window has no room left for."""
        used = self.used(state, sender, height)
        if used + size > self.window_bytes:
            next_window = (self.window(height) + 1) * self.window_blocks
            raise QuotaExceeded(
                f"sender has committed {used} of its {self.window_bytes} bytes in this quota window; "
                f"a {size}-byte transaction does not fit before height {next_window}",
                data={"used": used, "limit": self.window_bytes, "retry_at_height": next_window})

    def charge(self, state: StateView, sizes: Mapping[bytes, int], height: int) -> None:
        """Execution's part: add each sender's bytes in the block at ``height`` to its window."""
        window = self.window(height)
        for sender in sorted(sizes):
            used = self.used(state, sender, height) + sizes[sender]
            state.set(PREFIX + sender, window.to_bytes(8, "big") + used.to_bytes(8, "big"))

    def fit(self, state: StateView, txs: Sequence[bytes], height: int) -> list[bytes]:
        """The proposer's part: ``txs`` in order, less every sender's transactions from the first that
        would break its block or window budget on (its later nonces cannot go without it)."""
        taken: dict[bytes, int] = {}
        room: dict[bytes, int] = {}  # each sender's budget left in this block, read from state once
        cut: set[bytes] = set()
        kept = []
        for raw in txs:
            sender = sender_of(raw)
            if sender is None:
                kept.append(raw)  # not a transaction this checks; the block's validation will say
                continue
            if sender in cut:
                continue
            if sender not in room:
                room[sender] = min(self.block_bytes, self.window_bytes - self.used(state, sender, height))
            size = taken.get(sender, 0) + len(raw)
            if size > room[sender]:
                cut.add(sender)
                continue
            taken[sender] = size
            kept.append(raw)
        return kept

    def check_block(self, state: StateView, txs: Sequence[bytes], height: int) -> None:
        """A validator's part: raise :class:`InvalidInput` naming the sender whose budget the block breaks."""
        sizes: dict[bytes, int] = {}
        for raw in txs:
            sender = sender_of(raw)
            if sender is not None:
                sizes[sender] = sizes.get(sender, 0) + len(raw)
        for sender, size in sorted(sizes.items()):
            if size > self.block_bytes:
                raise InvalidInput(f"block carries {size} bytes from sender {sender.hex()[:16]}; "
                                   f"member_block_bytes is {self.block_bytes}")
            used = self.used(state, sender, height)
            if used + size > self.window_bytes:
                raise InvalidInput(f"block takes sender {sender.hex()[:16]} to {used + size} bytes in its quota "
                                   f"window; member_window_bytes is {self.window_bytes}")


def carry_over(state: StateView, old: bytes, new: bytes) -> None:
    """An account rotating its key keeps its window's usage, so a rotation never buys a fresh quota."""
    raw = state.get(PREFIX + old)
    if raw is not None:
        state.set(PREFIX + new, raw)
