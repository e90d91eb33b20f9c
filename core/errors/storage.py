"""Storage and process errors: what a validator meets on its own disk, ports and tasks."""

from __future__ import annotations

import errno
from typing import ClassVar

from core.errors.base import FbciError


class StorageError(FbciError):
    code = -32040
    reason = "storage_error"


class AddressInUse(FbciError):
    """A listen address (p2p or JSON-RPC) that another process already holds."""

    code = -32050
    reason = "address_in_use"


class NodeUnreachable(FbciError):
    """(Client side) no validator answers at the URL: nothing listens there, or the connection broke."""

    code = -32060
    reason = "node_unreachable"


class DiskFull(StorageError):
    """The file system holding the node's data is full (ENOSPC, EDQUOT): the write did not happen."""

    code = -32041
    reason = "disk_full"
    errnos: ClassVar[frozenset[int]] = frozenset({errno.ENOSPC, errno.EDQUOT})
    remedy: ClassVar[str] = "free space on that disk, then restart the validator"


class TooManyOpenFiles(StorageError):
    """The process (EMFILE) or the system (ENFILE) ran out of file descriptors while the node wrote."""

    code = -32042
    reason = "too_many_open_files"
    errnos: ClassVar[frozenset[int]] = frozenset({errno.EMFILE, errno.ENFILE})
    remedy: ClassVar[str] = ("raise the open-file limit (LimitNOFILE in deploy/fbci-validator.service, or "
                             "ulimit -n), then restart the validator")


class StoreCorrupt(StorageError):
    """The block store is damaged or has a gap (a missing block, certificate or state height): the node
    refuses to start rather than validate on top of a chain that silently lost committed blocks."""

    code = -32043
    reason = "store_corrupt"


class WalLost(StorageError):
    """The consensus WAL is missing or shorter than what this validator is recorded to have signed:
    starting from it could make the validator sign a vote that conflicts with one it already sent."""

    code = -32044
    reason = "wal_lost"


def storage_error(errno_code: int | None, doing: str, detail: str) -> StorageError:
    """The named error for an OS error met while ``doing`` a write, so that a full disk or a spent
    descriptor limit reads as what it is, with what to do about it, rather than as a bug."""
    for cls in (DiskFull, TooManyOpenFiles):
        if errno_code in cls.errnos:
            return cls(f"{doing}: {detail}; {cls.remedy}")
    return StorageError(f"{doing}: {detail}")
