"""Refusals of private reads: unsigned, stale, replayed or by a reader without the right."""

from __future__ import annotations

from core.errors.base import FbciError


class ReadRefused(FbciError):
    """A private read (genesis ``read_policy``) that the node would not answer: each refusal is audited."""

    code = -32140
    reason = "read_refused"


class ReadAuthRequired(ReadRefused):
    """The method is private and the request carries no ``auth`` (a signed read request)."""

    code = -32141
    reason = "auth_required"


class BadReadSignature(ReadRefused):
    code = -32142
    reason = "bad_read_signature"


class StaleRead(ReadRefused):
    """The request's timestamp is outside the node's window: too old to be told apart from a replay."""

    code = -32143
    reason = "stale_request"


class ReplayedRead(ReadRefused):
    """The key already used this nonce: the same signed request sent again."""

    code = -32144
    reason = "replayed_nonce"


class UnknownReader(ReadRefused):
    code = -32145
    reason = "unknown_key"


class RevokedReader(ReadRefused):
    """The key is registered but holds no role any more (its roles were revoked)."""

    code = -32146
    reason = "revoked_key"


class ReadForbidden(ReadRefused):
    """The key's roles may not read this method, or not this item (another hospital's, another patient's)."""

    code = -32147
    reason = "read_forbidden"
