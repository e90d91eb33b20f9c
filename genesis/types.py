"""Field types shared by the genesis document, public key parts and node configs.

Each type carries its own check and a message that says what a good value
looks like, so every file that uses it refuses bad input in the same words.
Names and chain ids are lower case on purpose: two chains or two hospitals
that differ only in case would be easy to mix up and impossible to tell
apart in a log.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Annotated, Literal

from pydantic import AfterValidator, ConfigDict, Field

STRICT = ConfigDict(extra="forbid", strict=True, frozen=True, use_attribute_docstrings=True)

ROLES = ("admin", "validator", "hospital", "gateway", "clinician", "auditor", "patient_proxy")
Role = Literal["admin", "validator", "hospital", "gateway", "clinician", "auditor", "patient_proxy"]
"""clinician: reads its own hospital's alerts and predictions; auditor: reads the audit trail and
individual deltas; patient_proxy: a key a hospital issues for one patient, which writes that patient's
consent and reads its data-use history (``acl.issue``)."""

_CHAIN_ID = re.compile(r"[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?")
_NAME = re.compile(r"[a-z0-9]([a-z0-9_-]{0,30}[a-z0-9])?")
_PUBLIC_KEY = re.compile(r"[0-9a-f]{64}")
_HOSTNAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")


def _matching(pattern: re.Pattern[str], description: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(f"must be {description}; got {value[:80]!r}")
        return value
    return check


def split_address(text: str) -> tuple[str, int]:
    """``"host:port"`` -> ``(host, port)``; IPv6 hosts are written ``[::1]:port``."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"must be HOST:PORT; got {text[:80]!r}")
    if not port_text.isascii() or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"port must be a number from 1 to 65535; got {port_text[:20]!r}")
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ValueError(f"{host[:80]!r} is not an IPv6 address") from None
    elif re.fullmatch(r"[0-9.]+", host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError(f"{host[:80]!r} is not an IPv4 address") from None
    elif not _HOSTNAME.fullmatch(host):
        raise ValueError(f"{host[:80]!r} is not a host name or IP address (IPv6 goes in brackets)")
    return host, int(port_text)


def _listen_address(text: str) -> str:
    split_address(text)
    return text


def _dial_address(text: str) -> str:
    """An address others connect to: a wildcard such as 0.0.0.0 only makes sense for listening."""
    host, _ = split_address(text)
    if host in ("0.0.0.0", "[::]"):
        raise ValueError(f"{host} is a listen-only wildcard; give an address peers can reach")
    return text


def _unique_roles(roles: list[str]) -> list[str]:
    if len(set(roles)) != len(roles):
        raise ValueError("lists a role more than once")
    return roles


ChainId = Annotated[str, AfterValidator(_matching(
    _CHAIN_ID, "1-64 characters of a-z, 0-9, '.', '_', '-', starting and ending with a letter or digit"))]
Name = Annotated[str, AfterValidator(_matching(
    _NAME, "1-32 characters of a-z, 0-9, '_', '-', starting and ending with a letter or digit"))]
PublicKeyHex = Annotated[str, AfterValidator(_matching(
    _PUBLIC_KEY, "an Ed25519 public key as 64 lower-case hex digits"))]
MlDsaPublicKeyHex = Annotated[str, AfterValidator(_matching(
    re.compile(r"[0-9a-f]{3904}"), "an ML-DSA-65 public key as 3904 lower-case hex digits"))]
ListenAddress = Annotated[str, AfterValidator(_listen_address)]
DialAddress = Annotated[str, AfterValidator(_dial_address)]
Roles = Annotated[list[Role], Field(min_length=1), AfterValidator(_unique_roles)]
