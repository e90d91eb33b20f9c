"""``fbci fl train``: one hospital's training job against a running chain, and its Python API.

The hospital's data stays here; each round (``client.fl.hospital``) fetches
the committed global model over JSON-RPC, trains locally with torch, clips,
optionally noises (client-level DP, ``client.fl.training``), quantizes and
submits a signed ``fl.submit_update``, then waits for the chain to close the
round. Local data is this hospital's share of a named data set, the same
shares the in-process proofs use:

- ``breast_cancer``: its Dirichlet(0.5) label-skewed share of scikit-learn's
  breast cancer set (``client.fl.data.breast_cancer_split``).
- ``iomt``: flows generated for ``ids.flows.HOSPITAL_PROFILES[i]`` with the
  seed ``[seed, i]`` of ``ids.evaluation.flow_split``.
- ``vitals``: NEWS2-labelled windows of patients generated as in
  ``ids.evaluation.vital_split`` (deterioration rate rising with ``i``).
- ``synthetic``: rows of ``client.fl.synthetic``'s task, for the wide blob models.

A model that declares ``blobs`` pushes each update as a blob and pulls each
version as one (``client.fl.blob_transport``); nothing changes for the user.

Each data set feeds one kind of model (:data:`DATASET_SHAPES`); ``--dataset``
defaults to the model's (:data:`MODEL_DATASETS`), and a model whose input
width or class count does not fit the data is refused before training.
Hyperparameters default to the ones the in-process figures were measured with
(``client.fl.realdata``, ``bench/bench_ids.py``). Training imports torch (the
validator never does); ``main`` asks the node for its ``status`` and the
model's spec first, so a node that is not there or a model that does not fit
is an error before torch or any data is loaded.

Python API for demos and tests::

    result = train_rounds(url, key, "breast_cancer", x, y, rounds=5, progress=print)
    result.records[-1].new_version, result.epsilon
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from core.crypto import PrivateKey
from core.errors import ContractRejected, InvalidInput
from core.layers import check_chain
from ids.evaluation import DETERIORATION_TRAINING, HORIZON_H, IDS_TRAINING
from ids.features import N_FEATURES
from ids.deterioration import N_WINDOW_FEATURES
from ids.record import ATTACK_CLASSES
from fl_contracts.contract import RoundRecord
from fl_contracts.spec import ModelSpec
from genesis.schema import GenesisDoc
from client.light import home_genesis
from client.session import ChainSession, ChainTransport, load_client_key, resolve_rpc_url
from client.fl.blob_transport import BlobChainTransport
from client.fl.progress_text import format_progress
from client.fl.secagg_driver import SecureChainTransport
from client.fl.synthetic import CLASSES as SYNTHETIC_CLASSES, FEATURES as SYNTHETIC_FEATURES, synthetic_rows

if TYPE_CHECKING:  # these import torch: only training loads them
    from client.fl.hospital import Progress
    from client.fl.simulation import Poison
    from client.fl.training import DPConfig

Array = npt.NDArray[np.float64]
Labels = npt.NDArray[np.int64]

# (local epochs, learning rate, batch size) per data set: the settings the published figures were measured with.
# breast_cancer's are client.fl.realdata's LOCAL_EPOCHS and LR (which imports torch; a test keeps them equal).
DEFAULTS: dict[str, tuple[int, float, int]] = {
    "breast_cancer": (2, 0.2, 32),
    "iomt": (IDS_TRAINING.local_epochs, IDS_TRAINING.lr, IDS_TRAINING.batch_size),
    "vitals": (DETERIORATION_TRAINING.local_epochs, DETERIORATION_TRAINING.lr, DETERIORATION_TRAINING.batch_size),
    "synthetic": (1, 0.05, 64),  # a few steps: a wide model's step costs a 10M-parameter backward pass
}
DEFAULT_SAMPLES = {"iomt": 2000, "vitals": 40}
POISON_SCALE = 10.0
# (input width, classes) of each data set's examples: which models it can feed.
DATASET_SHAPES: dict[str, tuple[int, int]] = {
    "breast_cancer": (30, 2),  # sklearn's load_breast_cancer: 30 features, malignant/benign
    "iomt": (N_FEATURES, len(ATTACK_CLASSES)),
    "vitals": (N_WINDOW_FEATURES, 2),
    "synthetic": (SYNTHETIC_FEATURES, SYNTHETIC_CLASSES),
}
# The data set a model trains on when --dataset is not given: (model id prefix, data set).
MODEL_DATASETS: tuple[tuple[str, str], ...] = (
    ("breast_cancer", "breast_cancer"), ("iomt_ids", "iomt"), ("deterioration", "vitals"), ("wide_mlp", "synthetic"),
)


@dataclass
class TrainResult:
    model_id: str
    records: list[RoundRecord] = field(default_factory=list)
    epsilon: float | None = None
    delta: float | None = None


def local_data(dataset: str, hospital_index: int, hospitals: int, seed: int = 0, samples: int | None = None
               ) -> tuple[Array, Labels]:
    """This hospital's training data: see the module docstring."""
    if not 0 <= hospital_index < hospitals:
        raise InvalidInput(f"--hospital-index {hospital_index} must be below --hospitals {hospitals}")
    if dataset == "breast_cancer":
        from client.fl.data import breast_cancer_split

        if hospitals > 20:
            raise InvalidInput("breast_cancer: at most 20 hospitals (426 training patients, at least 10 each)")
        return breast_cancer_split(hospitals, alpha=0.5, seed=seed).hospitals[hospital_index]
    if dataset == "iomt":
        from ids.features import feature_matrix, labels
        from ids.flows import HOSPITAL_PROFILES, generate_flows
        from ids.record import ATTACK_CLASSES

        profile = HOSPITAL_PROFILES[hospital_index % len(HOSPITAL_PROFILES)]
        records = generate_flows(profile, samples or DEFAULT_SAMPLES["iomt"], np.random.default_rng([seed, hospital_index]))
        return feature_matrix(records), labels(records, ATTACK_CLASSES)
    if dataset == "vitals":
        from ids.evaluation import HORIZON_H
        from ids.vitals import generate_patients, make_windows

        rate = 0.2 + 0.3 * hospital_index / max(hospitals - 1, 1)
        series = generate_patients(f"h{hospital_index}", samples or DEFAULT_SAMPLES["vitals"],
                                   np.random.default_rng([seed, hospital_index]), deterioration_rate=rate)
        windows = make_windows(series, horizon_h=HORIZON_H)
        return windows.x, windows.y
    if dataset == "synthetic":
        return synthetic_rows(hospital_index, samples or 256, seed)
    raise InvalidInput(f"--dataset: unknown data set {dataset!r}; choose {', '.join(DATASET_SHAPES)}")


def class_names(dataset: str) -> tuple[str, ...]:
    """Label ``i`` of ``dataset`` is ``class_names(dataset)[i]``, in the data set's own naming."""
    if dataset == "breast_cancer":
        from client.fl.data import breast_cancer_class_names

        return breast_cancer_class_names()
    if dataset == "iomt":
        return tuple(ATTACK_CLASSES)
    if dataset == "vitals":
        return ("stable", f"NEWS2>=5 within {HORIZON_H:g} h")
    if dataset == "synthetic":
        return ("negative", "positive")
    raise InvalidInput(f"--dataset: unknown data set {dataset!r}; choose {', '.join(DATASET_SHAPES)}")


def model_shape(spec: ModelSpec) -> tuple[int, int]:
    """(input width, classes) of the model's declared stack, or of the Linear/ReLU stack its layout implies."""
    return check_chain(spec.network_layers)


def _fitting(spec: ModelSpec) -> list[str]:
    return [name for name, shape in DATASET_SHAPES.items() if shape == model_shape(spec)]


def _feeds() -> str:
    return "; ".join(f"{name} has {w} features and {c} classes" for name, (w, c) in DATASET_SHAPES.items())


def default_dataset(spec: ModelSpec) -> str:
    """The data set ``spec``'s model trains on (:data:`MODEL_DATASETS`); InvalidInput for another model."""
    for prefix, dataset in MODEL_DATASETS:
        if spec.id.startswith(prefix):
            return dataset
    width, classes = model_shape(spec)
    fits = _fitting(spec)
    hint = f"--dataset {' or '.join(fits)} fits it" if fits else f"no local data set fits it ({_feeds()})"
    raise InvalidInput(f"--dataset: model {spec.id!r} has no default data set; pass --dataset "
                       f"(it takes {width} inputs and {classes} classes: {hint})")


def check_fits(spec: ModelSpec, dataset: str, x: Array | None = None, y: Labels | None = None) -> None:
    """Refuse, before any training, local data whose width or labels the model cannot take.

    Without ``x`` and ``y``, checks the data set's known shape (:data:`DATASET_SHAPES`); with them,
    the rows really loaded.
    """
    width, classes = model_shape(spec)
    if x is None or y is None:
        if dataset not in DATASET_SHAPES:
            raise InvalidInput(f"--dataset: unknown data set {dataset!r}; choose {', '.join(DATASET_SHAPES)}")
        data_width, data_classes = DATASET_SHAPES[dataset]
    else:
        data_width = int(np.shape(x)[1]) if np.ndim(x) == 2 else -1
        data_classes = int(np.max(y)) + 1 if len(y) else 0
        if data_width == width and 0 <= int(np.min(y, initial=0)) and data_classes <= classes:
            return
    if (data_width, data_classes) == (width, classes):
        return
    fits = _fitting(spec)
    hint = (f"model {spec.id!r} is for --dataset {' or '.join(fits)}" if fits
            else f"no local data set fits model {spec.id!r} ({_feeds()})")
    raise InvalidInput(f"--dataset {dataset}: its examples have {data_width} features and {data_classes} classes, "
                       f"but model {spec.id!r} takes {width} inputs and {classes} classes; {hint}")


def describe_classes(y: Labels, names: tuple[str, ...]) -> str:
    """``"40 malignant, 62 benign"``: how many of ``y`` carry each label, by its name."""
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=len(names))
    return ", ".join(f"{int(n)} {name}" for name, n in zip(names, counts))


def train_rounds(
    rpc_url: str, key: PrivateKey, model_id: str, x: Array, y: Labels, rounds: int, *,
    epochs: int = 2, lr: float = 0.2, batch_size: int = 32, dp: DPConfig | None = None,
    poison: Poison | None = None, seed: int = 0, progress: Callable[[Progress], None] | None = None,
    round_timeout_s: float = 180.0, local_addr: str | None = None, genesis: GenesisDoc | None = None,
    patients: list[bytes] | None = None,
) -> TrainResult:
    """Take part in ``rounds`` consecutive rounds of ``model_id`` as the hospital holding ``key``.

    ``patients``: the pseudonym of each row's patient. Each round then trains only on the rows
    whose patient may train the model at the round's consent snapshot (asked of the chain,
    ``client.fl.consent``), lists them in the update, and reports how many it left out. A round
    in which no record has consent is waited out and not counted in ``rounds``, as is one that
    closed before the update arrived (at most ``rounds`` such rounds: a hospital whose patients
    all withdrew stops).

    ``poison`` makes this hospital an attacker for robustness experiments: its
    delta is tampered as in ``client.fl.simulation`` (before clipping, so it
    stays inside the model's bounds) and it claims the largest FedAvg weight
    the model allows.
    """
    if len(x) != len(y) or len(y) == 0:
        raise InvalidInput(f"local data: {len(x)} rows and {len(y)} labels; need the same positive number")
    if patients is not None and len(patients) != len(y):
        raise InvalidInput(f"local data: {len(y)} rows but {len(patients)} patient pseudonyms")
    import torch

    from client.fl.consent import consented_rows
    from client.fl.hospital import HospitalClient, Progress
    from client.fl.simulation import poisoner
    from client.fl.training import TrainConfig

    torch.set_num_threads(1)  # hospitals in threads of one process must not oversubscribe the cores
    report = progress or (lambda p: None)
    client = HospitalClient(model_id, np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.int64),
                            TrainConfig(local_epochs=epochs, lr=lr, batch_size=batch_size), dp, seed=seed)
    tamper = None if poison is None else poisoner(poison, rounds, POISON_SCALE, seed)
    result = TrainResult(model_id, delta=None if dp is None else dp.delta)
    with ChainSession(rpc_url, key, local_addr=local_addr, genesis=genesis) as session:
        spec = session.spec(model_id)  # a secure model's rounds take four stages (client.fl.secagg_driver)
        kind = SecureChainTransport if spec.secure else BlobChainTransport if spec.blobs else ChainTransport
        transport = kind(session, round_timeout_s=round_timeout_s)
        trained = skipped = 0
        while trained < rounds and skipped <= rounds:  # a round with no consented record is not taken part in
            model = transport.get_model(model_id)
            report(Progress(model.open_round, "fetched", {"version": model.version.version}))
            left_out = _not_drawn(session, model.spec, model.open_round, key.public_key.raw)
            if left_out is not None:  # a sampled round that did not draw this hospital: let it pass
                report(Progress(model.open_round, "not_drawn", left_out))
                result.records.append(transport.wait_round(model_id, model.open_round))
                continue
            consented = None
            if patients is not None:
                consented = consented_rows(patients, model_id, model.snapshot_height, transport.consent_verdicts)
                report(Progress(model.open_round, "consent", {"used": int(consented.mask.sum()),
                                                              "left_out": consented.left_out,
                                                              "reasons": consented.reasons}))
                if not consented.patients:  # nothing to train on in this round: let it pass, try the next
                    skipped += 1
                    report(Progress(model.open_round, "skipped", {"snapshot": model.snapshot_height}))
                    result.records.append(transport.wait_round(model_id, model.open_round))
                    continue
            payload = client.make_update(model, tamper, consented)
            if poison is not None:
                payload["num_samples"] = model.spec.max_samples
            samples = len(y) if consented is None else int(consented.mask.sum())
            report(Progress(model.open_round, "trained", {"samples": samples, "epsilon": client.epsilon()}))
            try:
                receipt = transport.submit(payload)
            except ContractRejected as exc:  # the round closed while this hospital trained: try the next one
                if exc.data.get("fl_reason") != "wrong_round" or skipped >= rounds:
                    raise
                skipped += 1
                report(Progress(model.open_round, "late", {"reason": exc.message}))
                continue
            report(Progress(model.open_round, "submitted", receipt))
            record = transport.wait_round(model_id, model.open_round)
            report(Progress(model.open_round, "closed", {"status": record.status, "new_version": record.new_version,
                                                         "accepted": record.accepted}))
            result.records.append(record)
            trained += 1
    result.epsilon = client.epsilon()
    return result


def _not_drawn(session: ChainSession, spec: ModelSpec, rnd: int, hospital: bytes) -> dict[str, int] | None:
    """None when this hospital takes part in round ``rnd``; else the draw's size, roster and rate.

    The hospital recomputes its own ticket from the draw's seed, so a validator cannot keep it out of a
    round (or push it into one) by answering with a different list."""
    if spec.sample_rate_ppm is None:
        return None
    from fl_contracts.queries import FL_DRAW, DrawParams
    from fl_contracts.sampling import is_drawn

    draw = session.run(lambda c: c.query(FL_DRAW, DrawParams(model_id=spec.id, round=rnd)))
    if (hospital in draw.drawn) != is_drawn(draw.seed, spec.id, rnd, hospital, draw.rate_ppm):
        raise InvalidInput(f"round {rnd} of {spec.id}: the node's draw disagrees with this hospital's own ticket")
    if hospital in draw.drawn:
        return None
    return {"drawn": len(draw.drawn), "population": draw.population, "rate_ppm": draw.rate_ppm}


def _patients(args: argparse.Namespace, dataset: str, rows: int) -> list[bytes]:
    """The rows' pseudonyms, under the secret in the hospital's home (created on first use)."""
    from client.fl.consent import load_or_create_secret, pseudonyms, record_numbers

    if args.home is None:
        raise InvalidInput(f"model {args.model} requires consent: pass --home, whose keys/ holds the hospital's "
                           "pseudonym secret")
    from genesis.home import HomePaths

    secret = load_or_create_secret(HomePaths(Path(args.home)).keys_dir)
    return pseudonyms(record_numbers(dataset, args.hospital_index, rows), secret)


def main(args: argparse.Namespace) -> int:
    if args.dp_noise is not None and not (args.dp_noise > 0 and args.dp_clip > 0 and 0 < args.dp_delta < 1):
        raise InvalidInput("--dp-noise and --dp-clip must be positive and --dp-delta in (0, 1)")
    if args.lr is not None and not args.lr > 0:
        raise InvalidInput("--lr must be positive")
    url = resolve_rpc_url(args.rpc, args.home)
    key = load_client_key(args.key, args.home)
    genesis = home_genesis(args.home)
    with ChainSession(url, genesis=genesis) as session:  # before torch and the data: is the node there, does the model fit?
        session.run(lambda c: c.status())
        spec = session.spec(args.model)
        consent_required = session.consent_required(args.model)
    if args.secure and not spec.secure:
        raise InvalidInput(f"--secure: model {args.model} does not aggregate securely; its update would be in the clear")
    if args.csv is not None:  # the hospital's own table, checked against the model's input schema
        from client.fl.tabular import load_table

        if not args.target:
            raise InvalidInput("--csv needs --target COLUMN: the column holding the class index")
        named = args.dataset or next((d for prefix, d in MODEL_DATASETS if spec.id.startswith(prefix)), None)
        if consent_required:
            raise InvalidInput(f"model {args.model} requires consent, and a --csv table carries no record numbers "
                               "to check it by: train it on a named data set (--dataset)")
        x, y = load_table(spec, Path(args.csv), args.target, named)
        dataset = named or "breast_cancer"  # whose training defaults to use
        check_fits(spec, f"(--csv {args.csv})", x, y)
    else:
        dataset = args.dataset or default_dataset(spec)
        check_fits(spec, dataset)
        x, y = local_data(dataset, args.hospital_index, args.hospitals, args.seed, args.samples)
        check_fits(spec, dataset, x, y)
    default_epochs, default_lr, default_batch = DEFAULTS[dataset]
    patients = _patients(args, dataset, len(y)) if consent_required else None
    from client.fl.training import DPConfig

    dp = None if args.dp_noise is None else DPConfig(args.dp_clip, args.dp_noise, args.dp_delta)
    names = tuple(str(c) for c in range(model_shape(spec)[1])) if args.csv else class_names(dataset)
    print(f"hospital {args.hospital_index}/{args.hospitals}: {len(y)} local {args.csv or dataset} samples "
          f"({describe_classes(y, names)}), model {args.model} at {url}"
          + ("" if dp is None else f", DP sigma {dp.noise_multiplier} clip {dp.clip_norm}"), flush=True)
    result = train_rounds(url, key, args.model, x, y, args.rounds, epochs=args.epochs or default_epochs,
                          lr=args.lr or default_lr, batch_size=args.batch_size or default_batch, dp=dp,
                          poison=args.poison, seed=args.seed, progress=format_progress(args.rounds),
                          round_timeout_s=args.round_timeout, genesis=genesis, patients=patients)
    last = result.records[-1]
    print(f"done: {len(result.records)} round(s); global model {args.model} is at version "
          f"{last.new_version if last.new_version is not None else last.base_version}")
    if result.epsilon is not None:
        print(f"privacy spent: (epsilon, delta) = ({result.epsilon:.4f}, {result.delta:g}) over "
              f"{len(result.records)} round(s)")
    sys.stdout.flush()
    return 0
