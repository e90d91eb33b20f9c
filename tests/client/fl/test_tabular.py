"""``fbci fl train --csv FILE --target COLUMN``: a hospital's own table, checked against the model's input schema."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer

from client.fl import tabular
from core.errors import InputSchemaMismatch, InvalidInput
from fl_contracts.spec import ModelSpec
from tests.client.fl.test_train_cli import chain, fl_train  # noqa: F401  (the fake chain fixture)

BC = load_breast_cancer()
NAMES = [str(n) for n in BC.feature_names]


def write(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def breast_cancer_csv(path: Path, order: list[str] | None = None, n: int = 40) -> Path:
    order = order or NAMES
    idx = [NAMES.index(c) for c in order]
    return write(path, [*order, "diagnosis"], [[*BC.data[i, idx].tolist(), int(BC.target[i])] for i in range(n)])


def test_a_table_in_schema_order_loads_exactly(tmp_path: Path) -> None:
    spec = ModelSpec.for_sequential("bc", [30, 2], input_features=tuple(NAMES))
    x, y = tabular.load_table(spec, breast_cancer_csv(tmp_path / "a.csv"), "diagnosis", None)
    assert np.array_equal(x, BC.data[:40]) and y.tolist() == BC.target[:40].tolist()


def test_swapped_columns_are_refused_with_the_first_difference(tmp_path: Path) -> None:
    order = NAMES.copy()
    order[3], order[7] = order[7], order[3]
    spec = ModelSpec.for_sequential("bc", [30, 2], input_features=tuple(NAMES))
    with pytest.raises(InputSchemaMismatch, match=f"column 4 is {order[3]!r}, the schema has {NAMES[3]!r}") as info:
        tabular.load_table(spec, breast_cancer_csv(tmp_path / "a.csv", order), "diagnosis", None)
    assert info.value.code == -32101


def test_missing_and_unknown_columns_are_named(tmp_path: Path) -> None:
    spec = ModelSpec.for_sequential("bc", [30, 2], input_features=tuple(NAMES))
    header = [*NAMES[:-1], "patient_weight", "diagnosis"]
    path = write(tmp_path / "a.csv", header, [[0.0] * 30 + [1]])
    with pytest.raises(InputSchemaMismatch, match=r"missing \['worst fractal dimension'\]; not in the schema "
                                                  r"\['patient_weight'\]"):
        tabular.load_table(spec, path, "diagnosis", None)


def test_a_catalog_model_without_a_declared_schema_uses_its_data_sets_names(tmp_path: Path) -> None:
    spec = ModelSpec.for_sequential("breast_cancer", [30, 2])
    order = NAMES[::-1]
    with pytest.raises(InputSchemaMismatch):
        tabular.load_table(spec, breast_cancer_csv(tmp_path / "a.csv", order), "diagnosis", "breast_cancer")
    x, _ = tabular.load_table(spec, breast_cancer_csv(tmp_path / "b.csv", order), "diagnosis", None)
    assert x.shape == (40, 30)  # no schema anywhere: width only, checked later by check_fits


@pytest.mark.parametrize("rows, target, match", [
    ([["1.0", "x", "0"]], "y", "line 2, column 'b': 'x' is not a number"),
    ([["1.0", "2.0"]], "y", "line 2 has 2 cells"),
    ([["1.0", "2.0", "0.5"]], "y", "class indices"),
    ([["1.0", "nan", "1"]], "y", "not finite"),
    ([["1.0", "2.0", "1"]], "label", "no target column 'label'"),
])
def test_bad_cells_are_refused_with_their_place(tmp_path: Path, rows: list[list[str]], target: str, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        tabular.read_csv(write(tmp_path / "a.csv", ["a", "b", "y"], rows), target)


def test_genesis_refuses_a_schema_of_the_wrong_width() -> None:
    with pytest.raises(Exception, match="input_features names 3 features; the first layer reads 30"):
        ModelSpec.for_sequential("bc", [30, 2], input_features=("a", "b", "c"))


def test_a_spec_without_a_schema_keeps_its_document_and_hash() -> None:
    spec = ModelSpec.for_sequential("bc", [30, 2])
    assert "input_features" not in spec.to_doc()
    with_schema = ModelSpec.for_sequential("bc", [30, 2], input_features=tuple(NAMES))
    assert ModelSpec.parse(with_schema.to_doc()) == with_schema and with_schema.hash != spec.hash


def test_fl_train_trains_on_the_csv(chain, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:  # noqa: F811
    path = breast_cancer_csv(tmp_path / "mine.csv")
    code, out, _ = fl_train(chain, capsys, "--model", "breast_cancer", "--csv", str(path), "--target", "diagnosis")
    assert code == 0 and chain["trained"] == [("breast_cancer", (40, 30))] and chain["loaded"] == []
    assert "40 local " in out


def test_fl_train_refuses_a_csv_in_the_wrong_order(chain, capsys: pytest.CaptureFixture[str],  # noqa: F811
                                                  tmp_path: Path) -> None:
    path = breast_cancer_csv(tmp_path / "mine.csv", NAMES[1:] + NAMES[:1])
    code, _, err = fl_train(chain, capsys, "--model", "breast_cancer", "--csv", str(path), "--target", "diagnosis")
    assert code != 0 and "input schema" in err and chain["trained"] == []
