"""A hospital's own table as training data: ``fbci fl train --csv FILE --target COLUMN``.

The columns other than the target must be the model's input schema, by name
and in order: a model reads features by position, so a table with the right
width but two columns swapped would train silently on the wrong inputs. The
schema is the one genesis declares (``ModelSpec.input_features``); a model
declared without one falls back to the feature names of the data set the
project trains it on (breast cancer's from scikit-learn, IoMT flows' from
``ids.features``, vital-sign windows' from ``ids.vitals``), and a model with
neither is checked by width only. Labels are class indices ``0..C-1``.
Every refusal is :class:`core.errors.InputSchemaMismatch` (or
:class:`~core.errors.InvalidInput` for an unreadable file) before any training.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import numpy.typing as npt

from core.errors import InputSchemaMismatch, InvalidInput
from fl_contracts.spec import ModelSpec

Array = npt.NDArray[np.float64]
Labels = npt.NDArray[np.int64]


def dataset_features(dataset: str) -> tuple[str, ...] | None:
    """Feature names of one of ``fl train``'s named data sets, in the order its examples carry them."""
    if dataset == "breast_cancer":
        from sklearn.datasets import load_breast_cancer

        return tuple(str(n) for n in load_breast_cancer().feature_names)
    if dataset == "iomt":
        from ids.features import FEATURE_NAMES

        return tuple(FEATURE_NAMES)
    if dataset == "vitals":
        from ids.vitals import WINDOW_FEATURE_NAMES

        return tuple(WINDOW_FEATURE_NAMES)
    return None


def check_columns(model_id: str, expected: tuple[str, ...], columns: list[str]) -> None:
    """Refuse ``columns`` unless they are ``expected`` exactly; the message names the first difference."""
    if tuple(columns) == expected:
        return
    missing = [c for c in expected if c not in columns]
    extra = [c for c in columns if c not in expected]
    if missing or extra:
        detail = "; ".join(part for part in (
            f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}" if missing else "",
            f"not in the schema {extra[:5]}{' ...' if len(extra) > 5 else ''}" if extra else "") if part)
    else:
        i = next(i for i, (a, b) in enumerate(zip(columns, expected)) if a != b)
        detail = f"same names in another order: column {i + 1} is {columns[i]!r}, the schema has {expected[i]!r} there"
    raise InputSchemaMismatch(f"the table's features do not match model {model_id!r}'s input schema "
                              f"({len(expected)} features): {detail}", data={"model": model_id})


def read_csv(path: Path, target: str) -> tuple[list[str], Array, Labels]:
    """(feature columns in file order, features, labels); refuses a missing target or a non-numeric cell."""
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"--csv {path}: cannot read it: {exc}") from None
    if not rows or not rows[0]:
        raise InvalidInput(f"--csv {path}: empty file; the first row must name the columns")
    header = [h.strip() for h in rows[0]]
    if len(set(header)) != len(header):
        raise InputSchemaMismatch(f"--csv {path}: a column name appears twice in the header")
    if target not in header:
        raise InputSchemaMismatch(f"--csv {path}: no target column {target!r}; columns are {header[:8]}"
                                  f"{' ...' if len(header) > 8 else ''}")
    t = header.index(target)
    data = rows[1:]
    if not data:
        raise InvalidInput(f"--csv {path}: no data rows")
    values = np.empty((len(data), len(header)), dtype=np.float64)
    for r, row in enumerate(data):
        if len(row) != len(header):
            raise InvalidInput(f"--csv {path}: line {r + 2} has {len(row)} cells; the header has {len(header)}")
        for c, cell in enumerate(row):
            try:
                values[r, c] = float(cell)
            except ValueError:
                raise InvalidInput(f"--csv {path}: line {r + 2}, column {header[c]!r}: {cell!r} is not a number") from None
            if not math.isfinite(values[r, c]):
                raise InvalidInput(f"--csv {path}: line {r + 2}, column {header[c]!r}: {cell!r} is not finite")
    y = values[:, t]
    if np.any(y != np.round(y)) or np.any(y < 0):
        raise InputSchemaMismatch(f"--csv {path}: target {target!r} must hold class indices 0, 1, ...")
    return [h for i, h in enumerate(header) if i != t], np.delete(values, t, axis=1), y.astype(np.int64)


def load_table(spec: ModelSpec, path: Path, target: str, dataset: str | None) -> tuple[Array, Labels]:
    """The table's features and labels after checking its columns against ``spec``'s input schema."""
    columns, x, y = read_csv(path, target)
    expected = spec.input_features or (dataset_features(dataset) if dataset else None)
    if expected:
        check_columns(spec.id, tuple(expected), columns)
    return x, y
