"""Write the real-data federated figures (item 6) to bench/results/fl_realdata.json and print them."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from client.fl.realdata import figures

OUT = Path(__file__).parent / "results" / "fl_realdata.json"


def main() -> None:
    torch.set_num_threads(1)
    figs = figures(seed=0)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(figs, indent=2))
    print(json.dumps(figs, indent=2))


if __name__ == "__main__":
    main()
