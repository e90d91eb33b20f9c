"""A running validator has neither torch nor scikit-learn loaded (DESIGN.md), checked on a real process.

One validator (``fbci node start``, started by :class:`devnet.testnet.Testnet`)
runs until it has committed a block and answered FL queries over JSON-RPC,
so code imported lazily on those paths has run. Then two independent checks:

1. ``/proc/<pid>/maps`` (and that of any child process): importing torch,
   scikit-learn or scipy mmaps their compiled extension modules and bundled
   shared libraries, so no mapped file may lie under ``/torch/``,
   ``/sklearn/``, ``/scipy/`` (or their ``*.libs/`` folders).
2. The validator runs with ``PYTHONPROFILEIMPORTTIME=1``, so the interpreter
   writes one ``import time:`` line per module it imports to the node's log;
   none may name torch, sklearn, scipy or opacus (or a submodule of one).

A control process that does import torch and scikit-learn shows that both
detectors would catch them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devnet.testnet import Testnet, rpc_call
from tests.ports import free_base_port

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/<pid>/maps")

# A mapped file under one of these folders means that package's native code is loaded.
MAPS_MARKERS = ("/torch/", "/sklearn/", "/scipy/", "/torch.libs/", "/scikit_learn.libs/", "/scipy.libs/")
# Top-level module names that must never be imported by a validator.
FORBIDDEN_MODULES = frozenset({"torch", "torchvision", "torchaudio", "functorch", "sklearn", "scipy", "opacus"})
IMPORT_TIME = "import time:"


# ---- detectors ---------------------------------------------------------------------------------

def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants, from ``/proc/<pid>/task/<tid>/children``."""
    seen: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.append(p)
        try:
            tasks = list(Path(f"/proc/{p}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                todo.extend(int(c) for c in (task / "children").read_text().split())
            except OSError:
                pass
    return seen


def mapped_files(pid: int) -> set[str]:
    """Every file path mapped into ``pid``'s address space."""
    paths = set()
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5].startswith("/"):
            paths.add(fields[5])
    return paths


def forbidden_mappings(paths: set[str]) -> dict[str, list[str]]:
    """marker -> the mapped paths that contain it (empty when nothing forbidden is loaded)."""
    hits: dict[str, list[str]] = {}
    for marker in MAPS_MARKERS:
        found = sorted(p for p in paths if marker in p)
        if found:
            hits[marker] = found
    return hits


def imported_modules(log_text: str) -> list[str]:
    """Module names from ``-X importtime`` lines: ``import time: <self> | <cumulative> | <indent><name>``."""
    modules = []
    for line in log_text.splitlines():
        at = line.find(IMPORT_TIME)
        if at < 0:
            continue
        fields = line[at + len(IMPORT_TIME):].split("|")
        if len(fields) != 3 or not fields[0].strip().isdigit():
            continue  # the header line: "self [us] | cumulative | imported package"
        modules.append(fields[2].strip())
    return modules


def forbidden_imports(modules: list[str]) -> list[str]:
    return sorted({m for m in modules if m.split(".")[0] in FORBIDDEN_MODULES})


# ---- the validator -----------------------------------------------------------------------------

@dataclass
class Running:
    net: Testnet
    pid: int
    log_path: Path
    models: str    # the fl_models answer, as JSON text (its shape is the RPC's business, not this test's)
    rounds: object


@pytest.fixture(scope="module")
def validator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    net = Testnet.create(1, tmp_path_factory.mktemp("validator_imports") / "net", free_base_port(4))
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("PYTHONPROFILEIMPORTTIME", "1")  # read only by the interpreter that _spawn starts
            net.start()
        pid = net.pid(0)
        assert pid is not None
        net.wait_ready(90, min_height=1)
        url = net.specs[0].rpc_url
        models = json.dumps(rpc_call(url, "fl_models", timeout=10))
        reader = net.client_key()  # models, rounds and alerts are private reads: signed, checked and audited
        rounds = rpc_call(url, "fl_rounds", {"model_id": "iomt_ids"}, timeout=10, reader=reader)
        rpc_call(url, "fl_model_get", {"model_id": "iomt_ids"}, timeout=10, reader=reader)
        rpc_call(url, "alerts_query", {}, timeout=10, reader=reader)
        rpc_call(url, "block_get", {"height": 1}, timeout=10)
        assert net.alive(0), f"validator exited after the queries; log tail:\n{net.log_tail(0)}"
        yield Running(net, pid, net.specs[0].log_path, models, rounds)
    finally:
        net.stop_all()


def test_fl_queries_ran(validator: Running) -> None:
    assert '"iomt_ids"' in validator.models, validator.models
    assert isinstance(validator.rounds, list), validator.rounds


def test_validator_maps_no_torch_sklearn_scipy(validator: Running) -> None:
    pids = process_tree(validator.pid)
    for pid in pids:
        paths = mapped_files(pid)
        if pid == validator.pid:
            # the read is live: the validator's own numpy extension modules are there
            assert any("/numpy/" in p for p in paths), sorted(paths)[:50]
        hits = forbidden_mappings(paths)
        assert not hits, f"validator process {pid} (tree {pids}) has mapped: " + \
            "; ".join(f"{m}: {ps[:5]}" for m, ps in hits.items())


def test_validator_imports_no_training_libs(validator: Running) -> None:
    modules = imported_modules(validator.log_path.read_text(errors="replace"))
    assert len(modules) >= 100, f"only {len(modules)} 'import time:' lines in {validator.log_path}: " \
                                "PYTHONPROFILEIMPORTTIME did not reach the validator"
    tops = {m.split(".")[0] for m in modules}
    assert {"numpy", "aiohttp", "node", "consensus", "fl_contracts"} <= tops, sorted(tops)
    bad = forbidden_imports(modules)
    assert not bad, f"the validator imported {bad}; see {validator.log_path}"


# ---- the detectors catch what they are for --------------------------------------------------------

def test_detectors_see_torch_and_sklearn_when_loaded(tmp_path: Path) -> None:
    """``make test`` installs the train extra, so torch is here to load; a control that found it
    missing would prove nothing, so that is a failure, not a skip."""
    assert importlib.util.find_spec("torch") is not None, "torch is not installed (pip install -e '.[train]')"
    stderr_path = tmp_path / "stderr.log"
    code = "import sys, torch, sklearn.linear_model; print('ready', flush=True); sys.stdin.read()"
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=err, env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"})
    try:
        assert proc.stdout is not None and proc.stdin is not None
        line = proc.stdout.readline()
        assert line.strip() == b"ready", f"control process failed: {stderr_path.read_text()[-2000:]}"
        hits = forbidden_mappings(set().union(*(mapped_files(p) for p in process_tree(proc.pid))))
        assert "/torch/" in hits, f"maps check missed torch: {sorted(hits)}"
        assert "/sklearn/" in hits, f"maps check missed sklearn: {sorted(hits)}"
        bad = forbidden_imports(imported_modules(stderr_path.read_text(errors="replace")))
        assert {"torch", "sklearn", "scipy"} <= {m.split(".")[0] for m in bad}, bad
        proc.stdin.close()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_import_time_parser() -> None:
    text = ("2024 node started\n"
            "import time: self [us] | cumulative | imported package\n"
            "import time:       120 |        120 |   _io\n"
            "import time:      5000 |     900000 | torch\n"
            "import time:        80 |         80 |     sklearn.utils._param_validation\n")
    assert imported_modules(text) == ["_io", "torch", "sklearn.utils._param_validation"]
    assert forbidden_imports(imported_modules(text)) == ["sklearn.utils._param_validation", "torch"]
