"""Shared pieces of the ``fbci`` parser: how a command, a group and a home are declared, and checked numbers."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

HELP_FORMAT = argparse.RawDescriptionHelpFormatter
"""Descriptions keep their line breaks: they hold examples."""


def at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value
    return parse


def add_command(sub: Any, name: str, handler: Callable[[argparse.Namespace], int | None], summary: str,
                description: str = "") -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=summary, description=f"{summary}\n\n{description}".strip(),
                       formatter_class=HELP_FORMAT)
    p.set_defaults(handler=handler)
    return p


def add_group(sub: Any, name: str, summary: str) -> Any:
    p = sub.add_parser(name, help=summary, description=summary, formatter_class=HELP_FORMAT)
    return p.add_subparsers(dest=f"{name}_command", required=True, metavar="COMMAND")


def add_home(p: argparse.ArgumentParser, required: bool = True, what: str = "the node's home directory") -> None:
    p.add_argument("--home", required=required, metavar="DIR", help=what)
