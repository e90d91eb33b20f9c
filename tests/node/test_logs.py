"""Log lines are logfmt and always name the validator."""

import logging
import shlex

from node.logs import LogfmtFormatter


def _fields(line: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in shlex.split(line))


def test_every_line_names_the_validator_and_quotes_safely() -> None:
    fmt = LogfmtFormatter("node2")
    record = logging.LogRecord("node.sync", logging.WARNING, __file__, 1, 'peer "x" sent = bad\nbatch', None, None)
    fields = _fields(fmt.format(record))
    assert fields["validator"] == "node2" and fields["level"] == "warning" and fields["logger"] == "node.sync"
    assert fields["msg"] == 'peer "x" sent = bad\\nbatch'
    assert fields["ts"].endswith("Z")
