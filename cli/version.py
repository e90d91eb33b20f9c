"""``fbci version`` and ``fbci --version``: what is installed, read from the package metadata.

Kept apart from the chain reads so that ``--version`` costs the parser nothing but this module.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class VersionInfo:
    fbci: str
    python: str
    platform: str


def version_info() -> VersionInfo:
    try:
        version = importlib.metadata.version("fbci")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        version = "unknown (not installed)"
    return VersionInfo(version, platform.python_version(), f"{platform.system()} {platform.machine()}")


def version_line() -> str:
    v = version_info()
    return f"fbci {v.fbci} (Python {v.python}, {v.platform})"


def version(args: argparse.Namespace) -> int:
    print(json.dumps(asdict(version_info()), indent=2) if args.json else version_line())
    return 0
