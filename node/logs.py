"""Structured (logfmt) logs: one line per event, every line naming its validator.

``ts=... level=warning validator=node2 logger=node.sync msg="..."`` is both
readable in a terminal and parseable by log shippers, and the validator name
on every line keeps four interleaved testnet logs apart.
"""

from __future__ import annotations

import logging
import time


def _quote(value: str) -> str:
    if value and not any(c in value for c in ' "=\\\n'):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class LogfmtFormatter(logging.Formatter):
    def __init__(self, validator: str) -> None:
        super().__init__()
        self.validator = validator

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        line = (f"ts={ts} level={record.levelname.lower()} validator={_quote(self.validator)} "
                f"logger={record.name} msg={_quote(record.getMessage())}")
        if record.exc_info:
            line += f" exc={_quote(self.formatException(record.exc_info))}"
        return line


def configure(validator: str, level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(LogfmtFormatter(validator))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
