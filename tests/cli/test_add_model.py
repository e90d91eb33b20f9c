"""``fbci genesis init --add-model FILE``: the consortium's own models join the catalog, never replace it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import cli.main as cli
from core.layers import LayerNorm, Linear, ReLU
from devnet.catalog import default_models
from fl_contracts.spec import ModelSpec
from genesis.schema import load_genesis
from node.kinds import model_specs

CATALOG = [spec.id for spec in default_models(2)]


def declaration(model_id: str, **over: object) -> dict[str, object]:
    layers = [Linear(kind="linear", inputs=30, outputs=16), LayerNorm(kind="layer_norm", width=16), ReLU(kind="relu"),
              Linear(kind="linear", inputs=16, outputs=2)]
    spec = ModelSpec.for_sequential(model_id, [], layers=layers, rule="fedavg", min_updates=1, max_updates=4)
    return {**json.loads(spec.model_dump_json()), **over}


def write(path: Path, doc: object) -> str:
    path.write_text(json.dumps(doc))
    return str(path)


def init(tmp_path: Path, *args: str) -> int:
    return cli.main(["genesis", "init", "--validators", "1", "--out", str(tmp_path / "net"), "--base-port", "32100",
                     *args])


def test_added_models_join_the_catalog_and_the_chain_reads_them(tmp_path: Path) -> None:
    one = write(tmp_path / "deep.json", declaration("hospital_deep"))
    two = write(tmp_path / "pair.json", [declaration("ward_a"), declaration("ward_b", sample_rate_ppm=500_000)])
    assert init(tmp_path, "--add-model", one, "--add-model", two) == 0
    specs = model_specs(load_genesis(tmp_path / "net" / "genesis.json"))  # as the validator parses genesis
    assert [s.id for s in specs] == [*CATALOG, "hospital_deep", "ward_a", "ward_b"]
    assert isinstance(specs[len(CATALOG)].layers[1], LayerNorm) and specs[-1].sample_rate_ppm == 500_000


def test_models_are_added_to_a_given_app_state_too(tmp_path: Path) -> None:
    base = write(tmp_path / "app.json", {"models": [declaration("own_base")]})
    assert init(tmp_path, "--app-state", base, "--add-model", write(tmp_path / "m.json", declaration("own_more"))) == 0
    assert [s.id for s in model_specs(load_genesis(tmp_path / "net" / "genesis.json"))] == ["own_base", "own_more"]


@pytest.mark.parametrize(("files", "code", "text"), [
    ([declaration("breast_cancer")], "-32103 model_id_clash", "model id 'breast_cancer' is already declared by the catalog"),
    ([declaration("twice"), declaration("twice")], "-32103 model_id_clash", "is already declared by"),
    (["{not json"], "-32104 bad_model_file", "m0.json"),
    ([[]], "-32104 bad_model_file", "one model declaration"),
    ([declaration("bad", layout=[["0.weight", [2, 30]]])], "-32104 bad_model_file", "layout must be the layers"),
    ([declaration("bad", rule="nope")], "-32104 bad_model_file", "unknown aggregation rule"),
])
def test_a_clash_or_a_bad_file_is_one_clear_error_and_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], files: list[object], code: str, text: str) -> None:
    args: list[str] = []
    for i, doc in enumerate(files):
        path = tmp_path / f"m{i}.json"
        if isinstance(doc, str):
            path.write_text(doc)
        else:
            write(path, doc)
        args += ["--add-model", str(path)]
    assert init(tmp_path, *args) == 1
    err = capsys.readouterr().err
    assert f"error[{code}]" in err and text in err and "Traceback" not in err
    assert not (tmp_path / "net").exists()


def test_a_missing_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert init(tmp_path, "--add-model", str(tmp_path / "absent.json")) == 1
    assert "absent.json: file does not exist" in capsys.readouterr().err
