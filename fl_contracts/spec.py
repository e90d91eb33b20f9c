"""A model as genesis declares it, with the bounds that make its arithmetic exact.

The chain aggregates integers, and some of that arithmetic runs through
float64 BLAS kernels for speed. That is only deterministic when every
intermediate value is an integer below 2**53 (then IEEE-754 float64 represents
it exactly and any summation order, thread split or FMA gives the same
number). :meth:`ModelSpec.check_bounds` refuses any spec for which the bounds
proved in :mod:`fl_contracts.fixedpoint` do not hold, so a validated spec is a
proof obligation discharged once at genesis rather than at every block.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError, model_validator

from core import codec
from core.errors import BadAggregationRule, InvalidInput
from core.layers import AnyLayer, Layer, check_chain, infer_layers, sequential_layout
from core.hashing import sha256

EXACT = 2**53
"""Every integer of magnitude up to this is exactly representable in float64."""

MAX_PARAMS = 1 << 26
MAX_UPDATES = 1024
INT32_MAX = 2**31 - 1
MODEL_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")

INT64 = 2**63
"""Every integer intermediate formed in int64 must stay below this in magnitude."""

Rule = Literal["fedavg", "median", "trimmed_mean", "multi_krum", "centered_clip", "foolsgold"]

RULE_PARAMS: dict[str, dict[str, tuple[int, int]]] = {
    "fedavg": {},
    "median": {},
    "trimmed_mean": {"trim": (0, MAX_UPDATES)},
    "multi_krum": {"f": (0, MAX_UPDATES), "m": (1, MAX_UPDATES)},
    "centered_clip": {"iters": (1, 10), "tau_pct": (10, 10_000)},
    "foolsgold": {},
}
"""Each rule's required parameters with their inclusive ranges; one entry per rule in ``aggregation.RULES``."""

ADAPTIVE_CLIP = "adaptive_clip_pct"
PRE_STEP_PARAMS: dict[str, tuple[int, int]] = {ADAPTIVE_CLIP: (100, 1_000)}
"""Optional parameters any rule accepts: the adaptive norm-clipping pre-step."""


def intermediate_bounds(p: int, a: int, n: int, w: int) -> dict[str, tuple[int, int]]:
    """The largest magnitude of each intermediate value of every rule, with the limit it must respect.

    ``p`` parameters, coordinates ``|x| <= a``, ``n`` updates, weights
    ``<= w``. Float64 kernels need exact integers (``<= 2**53``); int64
    arithmetic needs ``< 2**63``. Derivations are in
    :mod:`fl_contracts.fixedpoint` (bounds (1)-(4)) and :mod:`fl_contracts.robust`.
    """
    sq = p * a * a  # any sum of squares or Gram entry, before or after clipping
    norm = math.isqrt(sq) + 1
    return {
        "sum_of_squares_and_gram": (sq, EXACT),
        "weighted_sum": (n * w * a, EXACT),
        "weighted_sum_in_round_div": (2 * n * w * a + n * w, INT64),
        "clip_product": (a * norm, INT64),
        "krum_distance": (4 * sq, INT64),
        "krum_score_limbs": (n * (1 << 32), INT64),  # each limb of a score; the score itself is a Python int
        "trimmed_sum": (n * a, INT64),
        "centered_sq_distance": (4 * sq, INT64),
        "centered_clip_product": (2 * a * (2 * norm), INT64),
        "centered_sum_in_round_div": (2 * n * 2 * a + n, INT64),
        "foolsgold_weighted_sum_in_round_div": (2 * n * (1 << 16) * a + n * (1 << 16), INT64),
    }


Task = Literal["binary_classification", "multiclass_classification"]


class FixedPointFormat(BaseModel):
    """Values are integers in units of 2**-frac_bits, sent as little-endian int32."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    frac_bits: StrictInt = Field(ge=0, le=30)
    bits: Literal[32] = 32

    @property
    def scale(self) -> int:
        return 1 << self.frac_bits


class ModelSpec(BaseModel):
    """One model's genesis declaration; bounds are in quanta (units of 2**-frac_bits)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: StrictStr
    task: Task
    layout: tuple[tuple[StrictStr, tuple[StrictInt, ...]], ...]
    fixed_point: FixedPointFormat
    rule: Rule
    rule_params: dict[StrictStr, StrictInt] = Field(default_factory=dict)
    round_length_blocks: StrictInt = Field(ge=1, le=1_000_000)
    min_updates: StrictInt = Field(ge=1, le=MAX_UPDATES)
    max_updates: StrictInt = Field(ge=1, le=MAX_UPDATES)
    max_abs: StrictInt = Field(ge=1, le=INT32_MAX, description="largest |coordinate| of an update")
    max_norm: StrictInt = Field(ge=1, description="updates are scaled down to this L2 norm before any rule")
    max_samples: StrictInt = Field(ge=1, description="cap on an update's FedAvg weight")
    secure: StrictBool = Field(False, description="rounds use secure aggregation (fl_contracts.secure_round)")
    blobs: StrictBool = Field(False, description="updates and global versions travel as content-addressed blobs "
                                                 "(fl_contracts.blob_updates): a model too large for a transaction")
    input_features: tuple[StrictStr, ...] = Field(
        default=(), description="the input schema: feature names in the order the first layer reads them")
    layers: tuple[Layer, ...] = Field(
        default=(), description="the architecture in nn.Sequential order (core.layers); the layout must be its "
                                "state_dict. Empty: a Linear/ReLU stack read from the layout")
    sample_rate_ppm: StrictInt | None = Field(
        default=None, ge=1, le=1_000_000,
        description="each round draws each hospital with this probability, in millionths (fl_contracts.sampling); "
                    "None: every hospital, every round")

    @model_validator(mode="after")
    def check_bounds(self) -> ModelSpec:
        if not MODEL_ID.match(self.id):
            raise ValueError("id must match [a-z0-9][a-z0-9_.-]{0,63}")
        if not self.layout:
            raise ValueError("layout must name at least one parameter tensor")
        names = [name for name, _ in self.layout]
        if len(set(names)) != len(names):
            raise ValueError("layout names must be unique")
        if any(not shape or any(d < 1 for d in shape) for _, shape in self.layout):
            raise ValueError("layout shapes must be non-empty with positive dimensions")
        if not 1 <= self.num_params <= MAX_PARAMS:
            raise ValueError(f"layout has {self.num_params} parameters; the limit is {MAX_PARAMS}")
        if self.max_updates < self.min_updates:
            raise ValueError("max_updates must be at least min_updates")
        first_in = self.layout[0][1][1] if len(self.layout[0][1]) == 2 else None
        if self.layers:
            first_in = check_chain(self.layers)[0]
            if sequential_layout(self.layers) != self.layout:
                raise ValueError(f"layout must be the layers' nn.Sequential tensors {sequential_layout(self.layers)}")
        if self.input_features:
            if len(set(self.input_features)) != len(self.input_features) or not all(self.input_features):
                raise ValueError("input_features must be distinct, non-empty names")
            if first_in is not None and first_in != len(self.input_features):
                raise ValueError(f"input_features names {len(self.input_features)} features; "
                                 f"the first layer reads {first_in}")
        # Exactness obligations proved in fixedpoint's module docstring.
        if self.num_params * self.max_abs**2 > EXACT:
            raise ValueError("num_params * max_abs**2 exceeds 2**53: sums of squares would not be exact")
        if self.max_updates * self.max_samples * self.max_abs > EXACT:
            raise ValueError("max_updates * max_samples * max_abs exceeds 2**53: weighted sums would not be exact")
        if self.max_norm**2 > EXACT:
            raise ValueError("max_norm**2 exceeds 2**53")
        for what, (value, limit) in intermediate_bounds(self.num_params, self.max_abs, self.max_updates,
                                                        self.max_samples).items():
            if value > limit:
                raise ValueError(f"{what} can reach {value}, beyond {limit}: aggregation would not be exact")
        self._check_rule_params()
        if self.secure and (self.rule != "fedavg" or self.rule_params):
            steps = f"{self.rule} {dict(self.rule_params)}" if self.rule_params else self.rule
            raise ValueError(f"secure aggregation hides individual updates, so it combines only with fedavg and no "
                             f"pre-step, not {steps}: a robust rule or pre-step needs each update in the clear "
                             f"(norm bounding moves to the hospital in a secure round)")
        if self.secure and self.blobs:
            raise ValueError("a secure round's masked inputs travel inline, not as blobs: declare secure or blobs, "
                             "not both")
        if self.secure and self.sample_rate_ppm is not None:
            raise ValueError("a secure round fixes its participants when their keys are shared, so it does not "
                             "draw a sample: declare sample_rate_ppm or secure, not both")
        return self

    @model_validator(mode="before")
    @classmethod
    def known_rule(cls, doc: Any) -> Any:
        rule = doc.get("rule") if isinstance(doc, dict) else None
        if isinstance(rule, str) and rule not in RULE_PARAMS:
            raise BadAggregationRule(f"model {doc.get('id', '?')}: rule: unknown aggregation rule {rule!r}; "
                                     f"the chain runs {sorted(RULE_PARAMS)}", data={"field": "rule"})
        return doc

    def _bad_rule(self, key: str, message: str) -> BadAggregationRule:
        where = f"rule_params.{key}" if key else "rule_params"
        return BadAggregationRule(f"model {self.id}: {where}: {message}", data={"field": where})

    def _check_rule_params(self) -> None:
        """Raises :class:`BadAggregationRule` (not ValueError, so pydantic passes it through with its code)."""
        required, p = RULE_PARAMS[self.rule], self.rule_params
        allowed = {**required, **PRE_STEP_PARAMS}
        for key in sorted(p):
            if key not in allowed:
                raise self._bad_rule(key, f"{self.rule} takes no parameter {key!r}; it takes {sorted(allowed)}")
            lo, hi = allowed[key]
            if not lo <= p[key] <= hi:
                raise self._bad_rule(key, f"must be in [{lo}, {hi}], got {p[key]}")
        missing = sorted(set(required) - set(p))
        if missing:
            raise self._bad_rule(missing[0], f"{self.rule} needs the parameters {sorted(required)}")
        if self.rule == "trimmed_mean" and not 2 * p["trim"] < self.min_updates:
            raise self._bad_rule("trim", "trimmed_mean needs 2*trim < min_updates")
        if self.rule == "multi_krum":
            # Krum scores need n - f - 2 >= 1 neighbours; its guarantee needs n > 2f + 2 (Blanchard et al. 2017).
            if not p["f"] + 3 <= self.min_updates:
                raise self._bad_rule("f", "multi_krum needs f + 3 <= min_updates")
            if not p["m"] <= self.min_updates - p["f"]:
                raise self._bad_rule("m", "multi_krum needs 1 <= m <= min_updates - f")

    @property
    def network_layers(self) -> tuple[AnyLayer, ...]:
        """The declared layers, or the Linear/ReLU stack an older declaration's layout implies."""
        return self.layers or infer_layers(self.layout)

    @property
    def num_params(self) -> int:
        return sum(math.prod(shape) for _, shape in self.layout)

    def flatten(self, tensors: Mapping[str, npt.ArrayLike]) -> npt.NDArray[np.float64]:
        """Concatenate tensors in layout order; refuses a missing name or a wrong shape."""
        parts = []
        for name, shape in self.layout:
            arr = np.asarray(tensors[name], dtype=np.float64)
            if arr.shape != shape:
                raise InvalidInput(f"model {self.id}: {name} has shape {arr.shape}, expected {shape}")
            parts.append(arr.ravel())
        return np.concatenate(parts)

    def unflatten(self, flat: npt.ArrayLike) -> dict[str, npt.NDArray[np.float64]]:
        flat = np.asarray(flat, dtype=np.float64)
        out, offset = {}, 0
        for name, shape in self.layout:
            size = math.prod(shape)
            out[name] = flat[offset : offset + size].reshape(shape)
            offset += size
        return out

    def to_doc(self) -> dict[str, Any]:
        """The canonical-codec form stored in state and hashed."""
        doc = self.model_dump(mode="python")
        doc["layout"] = [[name, list(shape)] for name, shape in self.layout]
        doc["fixed_point"] = dict(doc["fixed_point"])
        if not self.secure:  # plain specs keep the document (and hash) they had before the flag existed
            del doc["secure"]
        if not self.blobs:  # and so do inline ones
            del doc["blobs"]
        if self.input_features:
            doc["input_features"] = list(self.input_features)
        else:  # specs from before input schemas keep their documents and hashes
            del doc["input_features"]
        if self.sample_rate_ppm is None:  # unsampled specs keep their documents and hashes too
            del doc["sample_rate_ppm"]
        if self.layers:
            doc["layers"] = [dict(layer) for layer in doc["layers"]]
        else:  # so do specs whose layers the layout implies
            del doc["layers"]
        return doc

    @property
    def hash(self) -> bytes:
        return sha256(codec.encode(self.to_doc()))

    @classmethod
    def parse(cls, doc: Any) -> ModelSpec:
        """Validate a genesis document; the error names the field that is wrong."""
        try:
            return cls.model_validate(doc)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "spec"
            model = doc.get("id", "?") if isinstance(doc, dict) else "?"
            raise InvalidInput(f"model {model}: {where}: {first['msg']}", data={"field": where}) from None

    @classmethod
    def for_sequential(
        cls, model_id: str, dims: list[int], *, task: Task | None = None, frac_bits: int = 16,
        rule: Rule = "fedavg", rule_params: dict[str, int] | None = None, round_length_blocks: int = 10,
        min_updates: int = 1, max_updates: int = 16, max_abs: float = 4.0, max_norm: float = 8.0,
        max_samples: int = 100_000, input_features: tuple[str, ...] = (),
        layers: Sequence[AnyLayer] = (), blobs: bool = False,
    ) -> ModelSpec:
        """Spec for torch ``nn.Sequential(Linear, ReLU, Linear, ...)`` with layer widths ``dims``.

        Bounds are given in real units here and stored in quanta. ``layers``: declare this architecture
        instead (``core.layers``: dropout, layer norm, any depth); ``dims`` is then not read.
        """
        layout: list[tuple[str, tuple[int, ...]]] = []
        for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
            layout += [(f"{2 * i}.weight", (d_out, d_in)), (f"{2 * i}.bias", (d_out,))]
        if layers:
            layout, classes = list(sequential_layout(layers)), check_chain(layers)[1]
        else:
            classes = dims[-1]
        scale = 1 << frac_bits
        return cls(
            id=model_id, task=task or ("binary_classification" if classes == 2 else "multiclass_classification"),
            layout=tuple(layout), layers=tuple(layers), fixed_point=FixedPointFormat(frac_bits=frac_bits), rule=rule,
            rule_params=rule_params or {}, round_length_blocks=round_length_blocks, min_updates=min_updates,
            max_updates=max_updates, max_abs=int(max_abs * scale), max_norm=int(max_norm * scale),
            max_samples=max_samples, input_features=input_features, blobs=blobs,
        )
