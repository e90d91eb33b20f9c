"""``--add-model FILE``: a consortium's own model declarations added to the catalog genesis would write.

Each file holds one model declaration (the JSON form of
``fl_contracts.spec.ModelSpec``, as each ``spec`` of ``fbci fl models --json``) or a
list of them. Every declaration is validated as the chain will validate it
and appended to the models already in the application state (the default
catalog, or ``--app-state``'s), so adding a model never drops the catalog's.
An id that is already declared, by the catalog or by an earlier file, is
refused rather than overriding it: a model's id names its whole history on chain.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.errors import BadModelFile, InvalidInput, ModelCatalogClash
from fl_contracts.spec import ModelSpec
from genesis.validation import read_json_file


def _declarations(path: Path) -> list[ModelSpec]:
    doc = read_json_file(path, error=BadModelFile)
    items = doc if isinstance(doc, list) else [doc]
    if not items or not all(isinstance(item, dict) for item in items):
        raise BadModelFile(f"{path}: must hold one model declaration (a JSON object) or a non-empty list of them")
    specs = []
    for i, item in enumerate(items):
        try:
            specs.append(ModelSpec.parse(item))
        except InvalidInput as exc:
            where = f"{path}" if len(items) == 1 else f"{path}[{i}]"
            raise BadModelFile(f"{where}: {exc.message}", data={**exc.data, "file": str(path)}) from None
    return specs


def add_models(app_state: dict[str, Any], paths: Sequence[str]) -> dict[str, Any]:
    """``app_state`` with the declarations in ``paths`` appended to its ``models``, in file order."""
    if not paths:
        return app_state
    models = list(app_state.get("models", []))
    source = {m.get("id"): "the catalog" for m in models if isinstance(m, dict)}
    for name in paths:
        for spec in _declarations(Path(name)):
            if spec.id in source:
                raise ModelCatalogClash(f"{name}: model id {spec.id!r} is already declared by {source[spec.id]}; "
                                        "give the new model its own id", data={"model_id": spec.id, "file": name})
            source[spec.id] = name
            models.append(spec.to_doc())
    return {**app_state, "models": models}
