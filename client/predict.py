"""``fbci predict``: score a patient's recent vitals with the chain's deterioration model, and explain it.

The model is the committed ``deterioration`` global version (or any version
by number), run with numpy (``ids.deterioration``): no torch, no training code.
Input is the patient's observations every 30 minutes, oldest first, as CSV
with the columns of ``ids.vitals.OBS_COLUMNS``; the last 4 hours (the
window the model was trained on, ``ids.vitals.make_windows``) are scored.
``--generate-patient SEED`` scores a generated patient instead, at the last
window before a deterioration if it has one. The answer is the probability
of NEWS2 >= 5 within 6 hours, the NEWS2 now, and the vitals that moved the
score (``Explanation.by_vital``), largest first.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import InvalidInput
from ids.deterioration import DeteriorationModel, Explanation
from ids.vitals import OBS_COLUMNS, STEP_H, generate_patient, news2_scores
from client.light import home_genesis
from client.session import ChainSession, reader_key, resolve_rpc_url

WINDOW_H = 4.0
WINDOW_ROWS = int(round(WINDOW_H / STEP_H))
# Plausible charted ranges; outside them a value is a typo or a unit error, not a patient.
RANGES: dict[str, tuple[float, float]] = {
    "resp_rate": (0, 80), "spo2": (40, 100), "temp": (25, 45), "sys": (30, 300), "heart_rate": (10, 300),
    "on_oxygen": (0, 1), "alert": (0, 1),
}


def read_observations(path: str | Path) -> np.ndarray:
    """The last window of :func:`read_series`: what the model scores."""
    return read_series(path)[-WINDOW_ROWS:]


def read_series(path: str | Path) -> np.ndarray:
    """Rows in ``OBS_COLUMNS`` order from a CSV with those columns (any order, extra columns refused)."""
    try:
        stream = open(path, newline="", encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(f"--csv: {path} does not exist") from None
    with stream:
        reader = csv.reader(stream)
        header = [h.strip().lower() for h in next(reader, [])]
        if not header:
            raise InvalidInput(f"{path}: empty file; expected a header with {', '.join(OBS_COLUMNS)}")
        unknown = [h for h in header if h not in OBS_COLUMNS]
        missing = [c for c in OBS_COLUMNS if c not in header]
        if unknown or missing:
            raise InvalidInput(f"{path}: line 1: " + "; ".join(
                ([f"unknown column(s) {', '.join(unknown)}"] if unknown else [])
                + ([f"missing column(s) {', '.join(missing)}"] if missing else [])))
        rows = []
        for row in reader:
            if not row or not any(cell.strip() for cell in row):
                continue
            where = f"{path}: line {reader.line_num}"
            if len(row) != len(header):
                raise InvalidInput(f"{where}: {len(row)} values for {len(header)} columns")
            values = dict(zip(header, row))
            obs = []
            for name in OBS_COLUMNS:
                raw = values[name].strip()
                try:
                    value = float(raw)
                except ValueError:
                    raise InvalidInput(f"{where}: field {name!r} must be a number, got {raw!r}") from None
                low, high = RANGES[name]
                if not math.isfinite(value) or not low <= value <= high:
                    raise InvalidInput(f"{where}: field {name!r} = {raw} is outside {low:g}..{high:g}")
                obs.append(value)
            rows.append(obs)
    if not rows:
        raise InvalidInput(f"{path}: no observations after the header")
    return np.array(rows, dtype=np.float64)


def generated_observations(seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    """The last window before a generated patient's deterioration (or its last window if it has none)."""
    series = generate_patient(f"patient-{seed}", np.random.default_rng(seed))
    end = len(series.times_h)
    if series.onset_h is not None:
        end = max(WINDOW_ROWS, int(np.flatnonzero(series.times_h == series.onset_h)[0]) - 2)
    info = {"patient": series.patient_id, "at_h": float(series.times_h[end - 1]),
            "onset_h": series.onset_h}
    return series.obs[end - WINDOW_ROWS:end], info


def load_model(session: ChainSession, model_id: str, version: int | None,
               patient: bytes | None = None) -> tuple[DeteriorationModel, int]:
    """``patient``: the pseudonym scored, named in the read so the validator's audit trail records who read
    that patient's prediction."""
    mv, weights = session.model_weights(model_id, version, patient=patient)
    return DeteriorationModel.from_weights(weights, session.spec(model_id).network_layers), mv.version


def patient_pseudonym(text: str | None) -> bytes | None:
    if text is None:
        return None
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise InvalidInput("--patient: a pseudonym is 64 hex digits (fbci consent pseudonym --mrn prints it)")
    return raw


def explain_text(e: Explanation, news2_now: int, model_id: str, version: int, top: int = 5) -> str:
    lines = [f"P(NEWS2 >= 5 within 6 h) = {e.probability:.3f}   (log-odds {e.log_odds:+.2f}; "
             f"NEWS2 now {news2_now}; model {model_id} v{version})"]
    if version == 0:
        lines.append("note: version 0 is the untrained genesis model; train it with 'fbci fl train --dataset vitals'")
    lines.append("what drove it (contribution to the log-odds):")
    for vital, c in e.by_vital[:top]:
        direction = "raises" if c > 0 else "lowers" if c < 0 else "no effect on"
        lines.append(f"  {vital:<14} {c:+.3f}  {direction} the risk")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    url = resolve_rpc_url(args.rpc, args.home)
    if args.csv:
        obs, info = read_observations(args.csv), {"source": str(args.csv)}
    else:
        obs, info = generated_observations(args.generate_patient)
    patient = patient_pseudonym(args.patient)
    with ChainSession(url, reader_key(args.key, args.home), genesis=home_genesis(args.home)) as session:
        model, version = load_model(session, args.model, args.version, patient)
    explanation = model.score_recent(obs)
    news2_now = int(news2_scores(obs[-1:])[0])
    if args.json:
        print(json.dumps({**info, **({"pseudonym": patient.hex()} if patient else {}), "model_id": args.model, "model_version": version,
                          "probability": explanation.probability, "log_odds": explanation.log_odds,
                          "news2_now": news2_now, "observations": len(obs),
                          "by_vital": dict(explanation.by_vital)}, indent=2))
        return 0
    if "patient" in info:
        onset = "no deterioration" if info["onset_h"] is None else f"NEWS2 >= 5 from {info['onset_h']:g} h"
        print(f"generated {info['patient']} at {info['at_h']:g} h ({onset})")
    print(f"scored the last {len(obs)} observation(s) ({len(obs) * STEP_H:g} h)")
    print(explain_text(explanation, news2_now, args.model, version))
    return 0
