"""The consent policy genesis declares in ``app_state.consent``.

``{"required_for": ["breast_cancer", ...]}`` (or ``["*"]``) names the models
whose updates must list consented patients; absent, no model requires it and
an update may still list patients (then they are checked and weigh it).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.errors import InvalidGenesis

MODEL_OR_ALL = r"^(\*|[a-z0-9][a-z0-9_.-]{0,63})$"


class ConsentPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    required_for: list[Annotated[str, Field(pattern=MODEL_OR_ALL)]] = Field(default_factory=list, max_length=1024)


def consent_policy(app_state: dict[str, Any]) -> ConsentPolicy:
    try:
        policy = ConsentPolicy.model_validate(app_state.get("consent", {}))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidGenesis(f"app_state.consent.{where}: {first['msg']} (a model id or '*')") from None
    return policy
