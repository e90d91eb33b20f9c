"""Errors of state sync: a snapshot that cannot be restored, or a peer that sent a bad piece."""

from __future__ import annotations

from core.errors.base import FbciError, PeerMisbehaved


class StateSyncFailed(FbciError):
    """State sync found no peer that served a snapshot which verifies: nothing was restored."""

    code = -32190
    reason = "state_sync_failed"


class BadStateSyncMessage(PeerMisbehaved):
    """A state-sync message of the wrong shape: the peer is reported, nothing else happens."""

    code = -32191
    reason = "bad_state_sync_message"
