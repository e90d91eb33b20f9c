"""Errors of model declarations, aggregation rules and client sampling."""

from __future__ import annotations

from core.errors.base import InvalidInput, ContractRejected


class BadAggregationRule(InvalidInput):
    """A model spec names an aggregation rule or rule parameter the chain does not accept."""

    code = -32100
    reason = "bad_aggregation_rule"


class InputSchemaMismatch(InvalidInput):
    """A hospital's table whose columns are not the model's declared input features, in order."""

    code = -32101
    reason = "input_schema_mismatch"


class NotDrawn(ContractRejected):
    """A hospital sent an update to a sampled round whose draw did not pick it (``fl_contracts.sampling``)."""

    code = -32102
    reason = "not_drawn"


class ModelCatalogClash(InvalidInput):
    """``fbci genesis init --add-model`` names a model id the catalog (or an earlier file) already declares."""

    code = -32103
    reason = "model_id_clash"


class BadModelFile(InvalidInput):
    """A model file for ``--add-model`` that cannot be read or is not one valid model declaration."""

    code = -32104
    reason = "bad_model_file"
