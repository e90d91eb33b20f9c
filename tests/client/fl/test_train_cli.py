"""``fbci fl train`` before any training: an absent node, a model the data cannot feed, and class names.

The chain is a fake session (the model specs a local testnet declares, from
``devnet.catalog``) and training is a recorder, so what is checked is what
happens before torch: the data set chosen for the model, the error for a
mismatch, the class counts printed, and, as a subprocess, that an
unreachable node is reported without importing torch or loading data.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer

import cli.main as cli
from client.fl import train
from client.fl.data import breast_cancer_split
from core.crypto import PrivateKey
from core.errors import InvalidInput, NotFound
from devnet.catalog import default_models
from fl_contracts.contract import RoundRecord
from fl_contracts.spec import ModelSpec
from tests.ports import free_base_port

REPO = Path(__file__).resolve().parents[3]
SPECS = {spec.id: spec for spec in default_models(4)}
SKLEARN = load_breast_cancer()
MALIGNANT = list(SKLEARN.target_names).index("malignant")  # 0 in scikit-learn's own labelling


class FakeSession:
    """``ChainSession`` as ``fl train``'s checks use it: a node that answers status, and the models on chain."""

    def __init__(self, specs: dict[str, ModelSpec]) -> None:
        self.specs = specs

    def __enter__(self) -> FakeSession:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def run(self, fn: Any) -> None:
        return None

    def consent_required(self, model_id: str) -> bool:
        return False

    def spec(self, model_id: str) -> ModelSpec:
        if model_id not in self.specs:
            raise NotFound(f"no model {model_id!r} on chain (models: {', '.join(sorted(self.specs))})")
        return self.specs[model_id]


@pytest.fixture
def chain(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """A fake chain with the catalog's models (plus ``custom``), a key file, and recorders for data and training."""
    specs = {**SPECS, "custom": ModelSpec.for_sequential("custom", [30, 8, 2], rule="fedavg", max_abs=8.0,
                                                         max_norm=16.0, round_length_blocks=5, min_updates=1,
                                                         max_updates=4)}
    seen: dict[str, Any] = {"key": tmp_path / "hospital.json", "loaded": [], "trained": []}
    PrivateKey.generate().save(seen["key"])
    real_local_data = train.local_data

    def local_data(dataset: str, *args: Any) -> Any:
        seen["loaded"].append(dataset)
        return real_local_data(dataset, *args)

    def train_rounds(url: str, key: Any, model_id: str, x: Any, y: Any, rounds: int, **kw: Any) -> train.TrainResult:
        seen["trained"].append((model_id, np.shape(x)))
        record = RoundRecord(model_id=model_id, round=1, base_version=0, opened_height=1, deadline_height=5,
                             closed_height=5, status="aggregated", accepted=1, new_version=1)
        return train.TrainResult(model_id, records=[record])

    monkeypatch.setattr(train, "ChainSession", lambda url, **options: FakeSession(specs))
    monkeypatch.setattr(train, "local_data", local_data)
    monkeypatch.setattr(train, "train_rounds", train_rounds)
    return seen


def fl_train(chain: dict[str, Any], capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["fl", "train", "--rpc", "http://127.0.0.1:1", "--key", str(chain["key"]), "--samples", "20",
                     *args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize(("model", "dataset"), [("breast_cancer", "breast_cancer"),
                                                ("breast_cancer_fedavg", "breast_cancer"),
                                                ("iomt_ids", "iomt"), ("deterioration", "vitals")])
def test_the_default_dataset_follows_the_model(chain: dict[str, Any], capsys: pytest.CaptureFixture[str],
                                               model: str, dataset: str) -> None:
    code, out, err = fl_train(chain, capsys, "--model", model)
    assert code == 0, err
    width = SPECS[model].layout[0][1][1]
    assert chain["loaded"] == [dataset] and chain["trained"][0][0] == model and chain["trained"][0][1][1] == width
    assert f"local {dataset} samples" in out


@pytest.mark.parametrize(("model", "dataset", "fits"), [
    ("iomt_ids", "breast_cancer", "iomt"), ("breast_cancer", "iomt", "breast_cancer"),
    ("deterioration", "breast_cancer", "vitals"), ("iomt_ids", "vitals", "iomt")])
def test_a_model_the_dataset_cannot_feed_is_refused_before_loading_or_training(
        chain: dict[str, Any], capsys: pytest.CaptureFixture[str], model: str, dataset: str, fits: str) -> None:
    code, out, err = fl_train(chain, capsys, "--model", model, "--dataset", dataset)
    assert code == 1 and err.startswith("error[-32602 invalid_input]: "), err
    inputs, classes = train.model_shape(SPECS[model])
    assert f"but model {model!r} takes {inputs} inputs and {classes} classes" in err
    assert f"model {model!r} is for --dataset {fits}" in err and "internal error" not in err
    assert chain["loaded"] == [] and chain["trained"] == []


def test_a_model_without_a_default_dataset_needs_dataset_and_is_told_which_fits(
        chain: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = fl_train(chain, capsys, "--model", "custom")
    assert code == 1 and err.startswith("error[-32602 invalid_input]: --dataset: model 'custom' has no default "
                                        "data set; pass --dataset (it takes 30 inputs and 2 classes: "
                                        "--dataset breast_cancer fits it)"), err
    assert chain["loaded"] == []
    code, _, err = fl_train(chain, capsys, "--model", "custom", "--dataset", "breast_cancer")
    assert code == 0 and chain["trained"][0][0] == "custom", err
    code, _, err = fl_train(chain, capsys, "--model", "nope")
    assert code == 3 and err.startswith("error[-32001 not_found]: no model 'nope' on chain"), err


def test_loaded_labels_the_model_has_no_output_for_are_refused() -> None:
    x = np.zeros((4, 30))
    with pytest.raises(InvalidInput, match="3 classes, but model 'breast_cancer' takes 30 inputs and 2 classes"):
        train.check_fits(SPECS["breast_cancer"], "breast_cancer", x, np.array([0, 1, 2, 1]))
    train.check_fits(SPECS["breast_cancer"], "breast_cancer", x, np.array([0, 0, 0, 0]))  # a one-class share fits


def test_class_counts_are_named_by_the_data_sets_own_labelling(chain: dict[str, Any],
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert train.class_names("breast_cancer") == tuple(SKLEARN.target_names) == ("malignant", "benign")
    code, out, err = fl_train(chain, capsys, "--model", "breast_cancer", "--hospital-index", "1")
    assert code == 0, err
    _, y = breast_cancer_split(4, alpha=0.5, seed=0).hospitals[1]
    malignant = int(np.sum(y == MALIGNANT))
    assert f"{len(y)} local breast_cancer samples ({malignant} malignant, {len(y) - malignant} benign)" in out, out


def test_the_demo_counts_malignant_patients_as_the_data_set_labels_them() -> None:
    from devnet.demo_learning import breast_cancer_rounds

    said: list[str] = []

    class Said(Exception):
        pass

    def say(text: str) -> None:  # the data summary comes before anything touches the chain
        said.append(text)
        raise Said

    with pytest.raises(Said):
        breast_cancer_rounds(["http://127.0.0.1:1"] * 4, [None] * 4, [], 1, say)  # type: ignore[list-item]
    split = breast_cancer_split(4, alpha=0.5, seed=0)
    printed = [int(n) for n in re.findall(r"(\d+) malignant", said[0])]
    assert printed == [int(np.sum(y == MALIGNANT)) for _, y in split.hospitals], said[0]
    test_malignant = int(np.sum(split.y_test == MALIGNANT))
    assert sum(printed) + test_malignant == int(np.sum(SKLEARN.target == MALIGNANT)) == 212, said[0]


def test_breast_cancer_training_defaults_are_the_measured_ones() -> None:
    from client.fl import realdata

    assert train.DEFAULTS["breast_cancer"][:2] == (realdata.LOCAL_EPOCHS, realdata.LR)


def test_an_unreachable_node_is_reported_before_torch_or_data_are_loaded(tmp_path: Path) -> None:
    key = tmp_path / "hospital.json"
    PrivateKey.generate().save(key)
    url = f"http://127.0.0.1:{free_base_port(1)}"
    t0 = time.monotonic()
    run = subprocess.run([sys.executable, "-X", "importtime", "-m", "cli.main", "fl", "train", "--rpc", url,
                          "--key", str(key), "--model", "breast_cancer"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - t0
    lines = run.stderr.splitlines()
    errors = [line for line in lines if not line.startswith("import time:")]
    imported = {line.split("|")[-1].strip() for line in lines if line.startswith("import time:")}
    assert run.returncode == 4, run.stderr[-2000:]
    assert errors == [f"error[-32060 node_unreachable]: no validator answers at {url}; is it running?"], errors
    assert not {m for m in imported if m.split(".")[0] in ("torch", "opacus", "sklearn")}, "torch or data loaded"
    assert elapsed < 30, elapsed


def test_without_torch_training_is_not_available_but_the_checks_still_run(
        chain: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m.split(".")[0] in ("torch", "opacus") or m in (
            "client.fl.training", "client.fl.hospital", "client.fl.simulation", "client.fl.realdata")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "torch", None)  # ``import torch`` now fails as if it were not installed
    code, _, err = fl_train(chain, capsys, "--model", "iomt_ids", "--dataset", "breast_cancer")
    assert code == 1 and err.startswith("error[-32602 invalid_input]: --dataset breast_cancer"), err
    code, _, err = fl_train(chain, capsys, "--model", "breast_cancer")
    assert code == 2 and err.startswith("error[-32601 not_available]: 'fbci fl train' needs the Python package "
                                        "'torch', which is not installed (pip install -e '.[train]')"), err


@pytest.mark.parametrize("dataset", ["breast_cancer", "iomt", "vitals"])
def test_the_known_dataset_shapes_are_the_loaded_ones(dataset: str) -> None:
    x, y = train.local_data(dataset, 0, 4, samples=30)
    width, classes = train.DATASET_SHAPES[dataset]
    assert x.shape[1] == width and 0 <= y.min() and y.max() < classes == len(train.class_names(dataset))
    if dataset == "breast_cancer":
        assert (width, classes) == (SKLEARN.data.shape[1], len(SKLEARN.target_names))
