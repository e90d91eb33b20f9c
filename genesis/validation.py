"""Reading JSON files and turning validation failures into messages a person can act on.

Every file fbci reads at start-up (genesis, node config, public key parts)
goes through here, so a malformed file is always refused the same way: one
error class, the file it came from, and the path of each bad field
(``genesis.json: params.max_tx_bytes: must be > 0``), never a pydantic dump
and never a traceback.

JSON is parsed strictly: ``NaN``/``Infinity`` and duplicate object keys are
refused, because either would let two readers of one file disagree about its
content (and so about its hash).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from core.errors import FbciError

MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_JSON_DEPTH = 16
MAX_ERRORS_SHOWN = 3
_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

M = TypeVar("M", bound=BaseModel)
Loc = tuple[str | int, ...]


class FieldError(ValueError):
    """A rule broken by one field, raised from a validator that knows the field's path.

    Model-level validators run with an empty location; carrying the path in
    the exception lets the message still name the field.
    """

    def __init__(self, loc: Loc, message: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message


def format_loc(loc: Sequence[str | int]) -> str:
    """``("validators", 1, "name")`` -> ``validators[1].name``; odd keys are quoted, so a message stays one line."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENTIFIER.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{part[:40]!r}]"
    return out


_PLAIN = {
    "missing": "is required",
    "extra_forbidden": "is not a known field",
    "int_type": "must be an integer",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "list_type": "must be a list",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
}


def _describe(error: ErrorDetails) -> tuple[Loc, str]:
    loc: Loc = tuple(error["loc"])
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "value_error" and isinstance(ctx.get("error"), FieldError):
        inner: FieldError = ctx["error"]
        return loc + inner.loc, inner.message
    if kind == "value_error":
        return loc, str(ctx.get("error", error["msg"]))
    if kind in _PLAIN:
        return loc, _PLAIN[kind]
    bounds = {"greater_than": "> {gt}", "greater_than_equal": ">= {ge}",
              "less_than": "< {lt}", "less_than_equal": "<= {le}"}
    if kind in bounds:
        return loc, "must be " + bounds[kind].format(**ctx)
    if kind == "too_short":
        return loc, f"needs at least {ctx.get('min_length')} item(s)"
    if kind == "too_long":
        return loc, f"has more than {ctx.get('max_length')} item(s)"
    if kind == "literal_error":
        return loc, f"must be one of {ctx.get('expected')}"
    msg = error["msg"]
    return loc, msg[:1].lower() + msg[1:]


def format_validation_error(exc: ValidationError, *, source: str) -> str:
    parts = []
    for error in exc.errors()[:MAX_ERRORS_SHOWN]:
        loc, text = _describe(error)
        parts.append(f"{format_loc(loc)}: {text}" if loc else text)
    hidden = exc.error_count() - MAX_ERRORS_SHOWN
    more = f" (and {hidden} more)" if hidden > 0 else ""
    return f"{source}: " + "; ".join(parts) + more


def validate_model(model: type[M], obj: Any, *, source: str, error: type[FbciError]) -> M:
    """``model.model_validate(obj)``, with any failure raised as ``error`` naming each bad field."""
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        raise error(format_validation_error(exc, source=source)) from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"key {key!r} appears twice in one object")
        obj[key] = value
    return obj


def parse_json(text: str | bytes, *, source: str, error: type[FbciError]) -> Any:
    """Strict JSON: no NaN/Infinity, no duplicate keys, bounded size; failures raise ``error``."""
    if len(text) > MAX_FILE_BYTES:
        raise error(f"{source}: is {len(text)} bytes; the limit is {MAX_FILE_BYTES}")
    try:
        return json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=_no_duplicates)
    except RecursionError:
        raise error(f"{source}: JSON nests too deeply") from None
    except UnicodeDecodeError:
        raise error(f"{source}: is not UTF-8 text") from None
    except ValueError as exc:  # json.JSONDecodeError is a ValueError, so are the hooks' refusals
        raise error(f"{source}: not valid JSON: {exc}") from None


def read_json_file(path: Path, *, error: type[FbciError]) -> Any:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise error(f"{path}: is larger than {MAX_FILE_BYTES} bytes")
        data = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{path}: file does not exist") from None
    except IsADirectoryError:
        raise error(f"{path}: is a directory, not a file") from None
    except OSError as exc:
        raise error(f"{path}: cannot be read: {exc.strerror or exc}") from None
    return parse_json(data, source=str(path), error=error)


def check_canonical_json(value: Any, loc: Loc = (), depth: int = 0) -> None:
    """Refuse what the canonical codec cannot hash: floats, non-string keys, huge ints, deep nesting.

    Floats are refused rather than converted because the same decimal text
    may round differently on two machines; on-chain numbers are fixed-point
    integers.
    """
    if depth > MAX_JSON_DEPTH:
        raise FieldError(loc, f"nests deeper than {MAX_JSON_DEPTH} levels")
    if value is None or isinstance(value, (bool, str)):
        return
    if isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise FieldError(loc, "integer is outside the 64-bit range")
        return
    if isinstance(value, float):
        raise FieldError(loc, "floats are not allowed (everything hashed on chain is canonical); "
                              "use fixed-point integers")
    if isinstance(value, list):
        for i, item in enumerate(value):
            check_canonical_json(item, (*loc, i), depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise FieldError(loc, f"key {key!r} is not a string")
            check_canonical_json(item, (*loc, key), depth + 1)
        return
    raise FieldError(loc, f"a {type(value).__name__} is not a JSON value")


def write_file_atomic(path: Path, text: str, *, mode: int = 0o644) -> None:
    """Write via a temporary file and rename, so a crash never leaves half a config behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    os.fchmod(fd, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(text.encode())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def dump_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"
