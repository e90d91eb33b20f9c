"""The attack suite's full table: every rule and pre-step against every persistent attacker (issue 15).

Three bundled data sets (breast cancer: binary; wine: 3 classes; digits: 10
classes) x Dirichlet(0.5) and (0.1) label skew x (1 attacker of 4, a
colluding pair of 7) x 9 rule variants x (clean + 5 attacks), plus the
honest-only oracle per setting, each cell a federated run through the
in-process chain (see client.fl.robustness). Prints, per setting, the clean
and oracle accuracy and each attack's drop in points, then per config the
worst loss of each rule from its clean run and from the oracle, and whether
it meets the issue's target (2 points for 1/4, 3 points for 2/7); writes
bench/results/attacks.json.

Run: .venv/bin/python -m bench.bench_attacks [--datasets breast_cancer ...] [--seed 0]
Quick form (one corner of the grid, same code): add --alphas 0.1 --rules fedavg centered_clip+clip
--attacks sign_flip ipm --configs 1/4 (--rules may also name the TUNING settings of client.fl.robustness);
a partial run writes attacks_partial.json, not the table's file.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from client.fl.attacks import ATTACKS, CONFIGS
from client.fl.robustness import (ALPHAS, CLEAN, DATASETS, ORACLE, Cell, all_variants, drops, suite, to_json,
                                   verdicts, worst_by_dataset)

OUT = Path(__file__).parent / "results" / "attacks.json"
PARTIAL = OUT.with_name("attacks_partial.json")


def table(cells: list[Cell]) -> str:
    clean = {(c.dataset, c.alpha, c.config, c.rule): c.accuracy for c in cells if c.attack == CLEAN}
    w = max([20, *(len(c.rule) for c in cells)])
    attacks = [a for a in ATTACKS if any(c.attack == a for c in cells)]
    lines = []
    header = (f"{'data set':14} {'alpha':>5} {'att':>4} {'rule':{w}} {'clean':>6} {'oracle':>6} "
              + " ".join(f"{a:>10}" for a in attacks))
    lines += [header, "-" * len(header)]
    for key, per_attack in drops(cells).items():
        dataset, alpha, config, rule = key
        lines.append(f"{dataset:14} {alpha:5.1f} {config:>4} {rule:{w}} {100 * clean[key]:6.1f} "
                     f"{100 * clean[(dataset, alpha, config, ORACLE)]:6.1f} "
                     + " ".join(f"{100 * per_attack.get(a, float('nan')):10.1f}" for a in attacks))
    lines += ["", "attack columns: clean minus attacked accuracy, in points. Worst over every data set, skew and attack,",
              "from the rule's clean run and from the oracle (FedAvg of the honest hospitals alone):"]
    for config, rules in verdicts(cells).items():
        for rule, v in rules.items():
            c, o = v["vs_clean"], v["vs_oracle"]
            lines.append(f"  {config:>4} {rule:{w}} vs clean {100 * c['worst']:6.1f} {'meets' if c['meets_target'] else 'MISSES':6}"
                         f" ({c['where']});  vs oracle {100 * o['worst']:6.1f} {'meets' if o['meets_target'] else 'MISSES':6}"
                         f" ({o['where']})")
    lines += ["", "worst loss per data set (both skews, every attack), points: vs clean | vs oracle"]
    vs_oracle = worst_by_dataset(cells, ORACLE)
    for (config, rule), row in worst_by_dataset(cells).items():
        lines.append(f"  {config:>4} {rule:{w}} " + "  ".join(
            f"{d}: {100 * row[d]:5.1f} | {100 * vs_oracle[(config, rule)][d]:5.1f}" for d in row))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--alphas", nargs="+", type=float, default=list(ALPHAS))
    parser.add_argument("--configs", nargs="+", choices=[c.label for c in CONFIGS], default=[c.label for c in CONFIGS])
    parser.add_argument("--rules", nargs="+", choices=list(all_variants(CONFIGS[0])), default=None,
                        help="default: the table's rules; client.fl.robustness.TUNING names more settings of the default")
    parser.add_argument("--attacks", nargs="+", choices=list(ATTACKS), default=list(ATTACKS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    configs = [c for c in CONFIGS if c.label in args.configs]
    cells = list(suite(datasets=args.datasets, alphas=args.alphas, configs=configs, rules=args.rules,
                       attacks=(CLEAN, *args.attacks), seed=args.seed))
    full = (args.datasets == list(DATASETS) and args.alphas == list(ALPHAS) and len(configs) == len(CONFIGS)
            and args.rules is None and args.attacks == list(ATTACKS))
    out = {**to_json(cells), "seed": args.seed, "datasets": args.datasets, "alphas": args.alphas,
           "configs": args.configs, "rules": args.rules, "attacks": args.attacks, "wall_s": time.perf_counter() - start}
    path = OUT if full else PARTIAL
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(table(cells))
    print(f"\n{len(cells)} runs in {out['wall_s']:.0f} s; wrote {path}")


if __name__ == "__main__":
    main()
