"""The arrows between packages (DESIGN.md, "Packages and the arrows between them"), checked statically.

Every ``.py`` file under the project's top-level packages is parsed with
:mod:`ast` and every import is collected: ``import x``, ``from x import y``,
imports nested in functions or classes, imports under ``if TYPE_CHECKING:``,
relative imports (resolved against the file's own package), and the literal
dynamic forms ``importlib.import_module("x")`` / ``__import__("x")``. Only
the top-level name of each imported module matters for the rules:

- the leaves (consensus, fl_contracts, ids, genesis) import only ``core/``
  among the project's packages (and themselves);
- ``core/`` imports no other project package;
- ``node/`` imports none of ``client/``, ``cli/``, ``devnet/``;
- ``client/`` imports none of ``node/``, ``cli/``, ``devnet/``;
- ``devnet/`` does not import ``cli/`` (``cli/`` may import devnet, client, node);
- nothing outside ``client/`` imports torch, opacus or scikit-learn;
- ``consensus/`` is a pure state machine: no asyncio, aiohttp, socket,
  plyvel, time, random, secrets or os.

``bench/`` and ``tests/`` are not checked. Each violation names
``file:line`` and the rule it breaks. The checker is itself tested on a
synthetic tree, so these tests cannot pass by finding nothing.
"""

from __future__ import annotations

import ast
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

LEAVES = ("consensus", "fl_contracts", "ids", "consent", "governance", "genesis")
CHECKED = ("core", *LEAVES, "node", "client", "cli", "devnet")
# The project's own top-level packages, plus the folders that are not shipped:
# a leaf or core importing tests/ or bench/ breaks "import only core/" too.
PROJECT = frozenset(CHECKED) | {"tests", "bench"}

TRAINING_ONLY = frozenset({"torch", "torchvision", "torchaudio", "functorch", "opacus", "sklearn"})
IMPURE_FOR_CONSENSUS = frozenset({"asyncio", "aiohttp", "socket", "plyvel", "time", "random", "secrets", "os"})


@dataclass(frozen=True)
class Rule:
    name: str
    applies_to: frozenset[str]     # top-level packages whose files the rule checks
    forbidden: frozenset[str]      # top-level module names they must not import
    why: str


def _rules() -> list[Rule]:
    rules = [
        Rule(f"leaf-{leaf}-imports-only-core", frozenset({leaf}), PROJECT - {"core", leaf},
             f"{leaf}/ is a leaf: among the project's packages it imports only core/")
        for leaf in LEAVES
    ]
    rules += [
        Rule("core-imports-no-project-package", frozenset({"core"}), PROJECT - {"core"},
             "core/ is the bottom layer: it imports no other project package"),
        Rule("node-not-client-cli-devnet", frozenset({"node"}), frozenset({"client", "cli", "devnet"}),
             "node/ (the validator) never imports client/, cli/ or devnet/"),
        Rule("client-not-node-cli-devnet", frozenset({"client"}), frozenset({"node", "cli", "devnet"}),
             "client/ talks to validators over JSON-RPC only: no node/, cli/ or devnet/"),
        Rule("devnet-not-cli", frozenset({"devnet"}), frozenset({"cli"}),
             "devnet/ does not import cli/ (cli/ sits on top of devnet/)"),
        Rule("training-libs-only-in-client", frozenset(CHECKED) - {"client"}, TRAINING_ONLY,
             "torch, opacus and scikit-learn live only under client/"),
        Rule("consensus-is-pure", frozenset({"consensus"}), IMPURE_FOR_CONSENSUS,
             "consensus/ is a sans-I/O state machine: no sockets, clock, randomness, disk or event loop"),
    ]
    return rules


RULES = _rules()


@dataclass(frozen=True)
class Import:
    line: int
    module: str        # fully resolved dotted name ('' never appears: unresolved ones are errors)

    @property
    def top(self) -> str:
        return self.module.split(".")[0]


@dataclass(frozen=True)
class Violation:
    path: str          # relative to the scanned root, with '/'
    line: int
    rule: str
    module: str
    why: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: [{self.rule}] imports {self.module!r}: {self.why}"


def module_name(rel: Path) -> tuple[str, bool]:
    """``node/rpc/node_api.py`` -> ('node.rpc.node_api', False); ``node/rpc/__init__.py`` -> ('node.rpc', True)."""
    parts = list(rel.with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts = parts[:-1]
    return ".".join(parts), is_package


def _resolve_relative(level: int, module: str | None, this_module: str, is_package: bool) -> str | None:
    """The absolute name of ``from <'.' * level><module> import ...``; None when it climbs above the root."""
    package = this_module.split(".") if is_package else this_module.split(".")[:-1]
    if level - 1 >= len(package):
        return None
    base = package[:len(package) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _literal_dynamic_import(node: ast.Call) -> str | None:
    """``importlib.import_module("x")``, ``import_module("x")`` or ``__import__("x")`` with a literal name."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    if name not in ("import_module", "__import__") or not node.args:
        return None
    first = node.args[0]
    if isinstance(first, ast.Constant) and isinstance(first.value, str) and first.value \
            and not first.value.startswith("."):
        return first.value
    return None


def collect_imports(source: str, this_module: str, is_package: bool, filename: str = "<src>") -> tuple[
        list[Import], list[tuple[int, str]]]:
    """Every import in ``source``, anywhere in the tree; and (line, problem) for imports that cannot resolve."""
    tree = ast.parse(source, filename=filename)
    found: list[Import] = []
    problems: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(Import(node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                assert node.module is not None
                if node.module != "__future__":
                    found.append(Import(node.lineno, node.module))
                continue
            base = _resolve_relative(node.level, node.module, this_module, is_package)
            if base is None:
                problems.append((node.lineno, f"relative import (level {node.level}) climbs above the top-level "
                                              f"package of {this_module}"))
                continue
            found.append(Import(node.lineno, base))
            if node.module is None:  # 'from . import x': x may be a submodule
                found.extend(Import(node.lineno, f"{base}.{alias.name}") for alias in node.names
                             if alias.name != "*")
        elif isinstance(node, ast.Call):
            target = _literal_dynamic_import(node)
            if target is not None:
                found.append(Import(node.lineno, target))
    return found, problems


@dataclass
class Scan:
    files: Counter[str]                 # top-level package -> number of .py files parsed
    imports: dict[str, list[Import]]    # relative path -> imports
    violations: list[Violation]


def scan(root: Path, packages: tuple[str, ...] = CHECKED, rules: list[Rule] = RULES) -> Scan:
    files: Counter[str] = Counter()
    imports: dict[str, list[Import]] = {}
    violations: list[Violation] = []
    for package in packages:
        base = root / package
        for path in sorted(base.rglob("*.py")):
            rel = path.relative_to(root)
            if "__pycache__" in rel.parts:
                continue
            rel_s = rel.as_posix()
            this_module, is_package = module_name(rel)
            try:
                found, problems = collect_imports(path.read_text(encoding="utf-8"), this_module, is_package,
                                                  rel_s)
            except SyntaxError as exc:
                violations.append(Violation(rel_s, exc.lineno or 0, "parses", "", f"cannot parse: {exc.msg}"))
                continue
            files[package] += 1
            imports[rel_s] = found
            violations.extend(Violation(rel_s, line, "relative-import-resolves", "", problem)
                              for line, problem in problems)
            for imp in found:
                for rule in rules:
                    if package in rule.applies_to and imp.top in rule.forbidden:
                        violations.append(Violation(rel_s, imp.line, rule.name, imp.module, rule.why))
    violations.sort(key=lambda v: (v.path, v.line, v.rule, v.module))
    return Scan(files, imports, violations)


@pytest.fixture(scope="module")
def project() -> Scan:
    return scan(ROOT)


def _report(violations: list[Violation]) -> str:
    return f"{len(violations)} import(s) break the package arrows (DESIGN.md):\n" + \
        "\n".join(f"  {v}" for v in violations)


# ---- the real tree ---------------------------------------------------------------------------------

# Rough floors, well under today's counts: a scan that silently found nothing fails here.
MIN_FILES = {"core": 4, "consensus": 4, "fl_contracts": 3, "ids": 6, "consent": 4, "governance": 4, "genesis": 3, "node": 15, "client": 6,
             "cli": 2, "devnet": 3}


def test_scan_finds_every_package(project: Scan) -> None:
    short = {p: project.files[p] for p in CHECKED if project.files[p] < MIN_FILES[p]}
    assert not short, f"scan found too few .py files (found, want at least {MIN_FILES}): {short}"
    total_imports = sum(len(v) for v in project.imports.values())
    assert total_imports >= len(project.imports), f"only {total_imports} imports in {len(project.imports)} files"


def test_scan_sees_the_expected_downward_arrows(project: Scan) -> None:
    """Live check on the real tree: arrows that must exist are found, so imports are really being read."""
    edges = {(rel.split("/")[0], imp.top) for rel, found in project.imports.items() for imp in found}
    for edge in [("node", "core"), ("node", "consensus"), ("consensus", "core"), ("cli", "core"),
                 ("client", "core"), ("devnet", "genesis"), ("node", "fl_contracts")]:
        assert edge in edges, f"expected {edge[0]}/ to import {edge[1]}/; the scan saw: {sorted(edges)}"


def test_no_unparsable_or_unresolvable_imports(project: Scan) -> None:
    bad = [v for v in project.violations if v.rule in ("parses", "relative-import-resolves")]
    assert not bad, _report(bad)


@pytest.mark.parametrize("rule", [r.name for r in RULES])
def test_package_arrows(project: Scan, rule: str) -> None:
    broken = [v for v in project.violations if v.rule == rule]
    assert not broken, _report(broken)


# The application's insides: only the application itself, its composition (node/runtime.py) and the kinds
# registry may import them; everything else in the validator goes through node/application.py.
APPLICATION_INSIDES = ("node.app", "node.app_reads", "node.stores", "node.execution", "node.kinds", "node.accounts",
                       "node.evidence_tx", "node.quotas", "node.audit", "node.audit_anchor", "node.snapshots", "node.trie_versions",
                       "node.state_store")
ALLOWED_INSIDE = {"node/app.py", "node/app_reads.py", "node/stores.py", "node/execution.py", "node/kinds.py",
                  "node/accounts.py", "node/evidence_tx.py", "node/quotas.py", "node/runtime.py", "node/audit.py", "node/audit_anchor.py",
                  "node/snapshots.py", "node/trie_versions.py", "node/state_store.py", "node/validator_set.py"}


def test_the_node_reaches_its_application_only_through_the_boundary(project: Scan) -> None:
    """ABCI's rule: the consensus driver, block sync, the mempool and JSON-RPC hold an Application, nothing more."""
    reaching = [f"{rel}:{imp.line} imports {imp.module}" for rel, found in sorted(project.imports.items())
                if rel.startswith("node/") and rel not in ALLOWED_INSIDE for imp in found
                if any(imp.module == m or imp.module.startswith(m + ".") for m in APPLICATION_INSIDES)]
    assert not reaching, "reaches past node/application.py:\n  " + "\n  ".join(reaching)
    users = {rel for rel, found in project.imports.items() for imp in found if imp.module == "node.application"}
    assert {"node/blockexec.py", "node/mempool.py", "node/service.py", "node/sync.py"} <= users, (
        f"the boundary's users: {sorted(users)}")


# ---- the checker itself ----------------------------------------------------------------------------

def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


SYNTHETIC_BAD = {
    "core/__init__.py": "",
    "core/codec.py": "import node.app\n",                                            # core -> node
    "consensus/__init__.py": "",
    "consensus/machine.py": (
        "from typing import TYPE_CHECKING\n"
        "import time\n"                                                              # 2 impure
        "if TYPE_CHECKING:\n"
        "    from fl_contracts.aggregation import Rule\n"                                  # 4 leaf -> leaf
        "def f():\n"
        "    import os.path\n"                                                       # 6 impure, nested
        "    return 1\n"
        "class C:\n"
        "    def g(self):\n"
        "        from asyncio import sleep\n"                                        # 10 impure, in a method
    ),
    "consensus/sub/__init__.py": "from .. import votes\n",                           # consensus.votes: fine
    "consensus/sub/deep.py": "from ..votes import Vote\nfrom ... import node\n",     # 2 climbs above consensus
    "fl_contracts/__init__.py": "",
    "fl_contracts/aggregation.py": "from ids.features import FEATURES\n",                 # leaf -> leaf
    "ids/__init__.py": "",
    "ids/features.py": "def load():\n    import tests.ports\n",                     # 2 leaf -> tests
    "ids/detect.py": "import importlib\nm = importlib.import_module('sklearn.ensemble')\n",  # 2 sklearn, dynamic
    "genesis/__init__.py": "",
    "genesis/doc.py": "from devnet import catalog\n",                                # leaf -> devnet
    "consent/__init__.py": "",
    "consent/contract.py": "from fl_contracts import contract\n",                   # leaf -> leaf
    "governance/__init__.py": "",
    "governance/contract.py": "from node import accounts\n",                        # leaf -> node
    "node/__init__.py": "",
    "node/rpc/__init__.py": "",
    "node/rpc/server.py": "from ...client import rpc\n",                             # climbs above node
    "node/app.py": "from client.rpc import RpcClient\nimport torch\n",               # 1 node->client, 2 torch
    "client/__init__.py": "",
    "client/session.py": "from node.rpc.node_api import NodeApi\nimport torch, opacus\n",  # 1 client->node; torch ok
    "devnet/__init__.py": "",
    "devnet/demo.py": "def main():\n    from cli.main import main as m\n",          # 2 devnet -> cli, nested
    "cli/__init__.py": "",
    "cli/main.py": "import devnet.testnet, client.session, node.app\n",              # all allowed
}

EXPECTED_BAD = {
    ("core/codec.py", 1, "core-imports-no-project-package"),
    ("consensus/machine.py", 2, "consensus-is-pure"),
    ("consensus/machine.py", 4, "leaf-consensus-imports-only-core"),
    ("consensus/machine.py", 6, "consensus-is-pure"),
    ("consensus/machine.py", 10, "consensus-is-pure"),
    ("consensus/sub/deep.py", 2, "relative-import-resolves"),
    ("fl_contracts/aggregation.py", 1, "leaf-fl_contracts-imports-only-core"),
    ("ids/features.py", 2, "leaf-ids-imports-only-core"),
    ("ids/detect.py", 2, "training-libs-only-in-client"),
    ("genesis/doc.py", 1, "leaf-genesis-imports-only-core"),
    ("consent/contract.py", 1, "leaf-consent-imports-only-core"),
    ("governance/contract.py", 1, "leaf-governance-imports-only-core"),
    ("node/rpc/server.py", 1, "relative-import-resolves"),
    ("node/app.py", 1, "node-not-client-cli-devnet"),
    ("node/app.py", 2, "training-libs-only-in-client"),
    ("client/session.py", 1, "client-not-node-cli-devnet"),
    ("devnet/demo.py", 2, "devnet-not-cli"),
}


def test_checker_catches_each_kind_of_violation(tmp_path: Path) -> None:
    _write(tmp_path, SYNTHETIC_BAD)
    result = scan(tmp_path)
    got = {(v.path, v.line, v.rule) for v in result.violations}
    assert got == EXPECTED_BAD, f"missing: {sorted(EXPECTED_BAD - got)}\nunexpected: {sorted(got - EXPECTED_BAD)}"
    # every rule is exercised at least once, so none can rot into a no-op
    assert {r.name for r in RULES} <= {rule for _, _, rule in got}, \
        f"rules never triggered: {sorted({r.name for r in RULES} - {rule for _, _, rule in got})}"


def test_checker_messages_name_file_line_and_rule(tmp_path: Path) -> None:
    _write(tmp_path, SYNTHETIC_BAD)
    messages = [str(v) for v in scan(tmp_path).violations]
    assert any(m.startswith("consensus/machine.py:6: [consensus-is-pure] imports 'os.path'") for m in messages), \
        messages
    assert any(m.startswith("client/session.py:1: [client-not-node-cli-devnet] imports 'node.rpc.node_api'")
               for m in messages), messages


def test_checker_allows_the_permitted_arrows(tmp_path: Path) -> None:
    allowed = {
        "core/__init__.py": "", "core/types.py": "from . import codec\nfrom .codec import encode\nimport numpy\n",
        "core/codec.py": "import hashlib\n",
        "consensus/__init__.py": "", "consensus/m.py": "from core.types import Block\nfrom . import votes\n"
                                                       "import dataclasses, typing, heapq\n",
        "fl_contracts/__init__.py": "", "fl_contracts/agg.py": "import numpy as np\nfrom core import codec\n",
        "ids/__init__.py": "", "ids/f.py": "import numpy\nfrom core.errors import E\n",
        "genesis/__init__.py": "", "genesis/g.py": "import json\nfrom core import keys\n",
        "node/__init__.py": "", "node/app.py": "import asyncio, os, time, aiohttp, plyvel\n"
                                              "from consensus.m import M\nfrom fl_contracts import agg\n",
        "client/__init__.py": "", "client/t.py": "import torch, opacus, sklearn.metrics\nfrom core import codec\n",
        "devnet/__init__.py": "", "devnet/t.py": "from genesis.g import x\nfrom client.t import y\nfrom node import app\n",
        "cli/__init__.py": "", "cli/main.py": "from devnet import t\nfrom client import t as u\nfrom node import app\n",
    }
    _write(tmp_path, allowed)
    result = scan(tmp_path)
    assert result.violations == [], _report(result.violations)
    assert sum(result.files.values()) == len(allowed)


def test_relative_imports_resolve_against_the_files_package() -> None:
    found, problems = collect_imports("from . import a, b\nfrom .x import y\nfrom ..z import w\n",
                                      "node.rpc.server", False)
    assert [i.module for i in found] == ["node.rpc", "node.rpc.a", "node.rpc.b", "node.rpc.x", "node.z"]
    found, _ = collect_imports("from .x import y\n", "node.rpc", True)
    assert [i.module for i in found] == ["node.rpc.x"]
    _, problems = collect_imports("from .. import x\n", "core.codec", False)
    assert problems and problems[0][0] == 1
