"""What ``fbci fl train`` prints for a person: one line per stage of each round it takes part in."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # client.fl.hospital imports the torch trainer
    from client.fl.hospital import Progress


def format_progress(total: int) -> Callable[[Progress], None]:
    """One line per stage per round: ``[round 3/5] submitted  height 41 position 2``."""
    done = [0]

    def show(p: Progress) -> None:
        d = p.detail
        if p.stage == "fetched":
            text = f"global model v{d['version']}"
        elif p.stage == "consent":
            why = ", ".join(f"{n} {reason}" for reason, n in sorted(d["reasons"].items()))
            text = f"{d['used']} record(s) with consent, {d['left_out']} left out" + (f" ({why})" if why else "")
        elif p.stage == "late":  # not taken part in either
            text = f"{d['reason']}; training again on the next round"
        elif p.stage == "skipped":  # not taken part in: not counted against --rounds
            text = f"no local record has consent at this round's snapshot (height {d['snapshot']}); waiting"
        elif p.stage == "not_drawn":
            done[0] += 1
            text = (f"not drawn: this round takes {d['drawn']} of {d['population']} hospitals (sample rate "
                    f"{d['rate_ppm'] / 1e6:g}); waiting for it to close")
        elif p.stage == "trained":
            text = f"{d['samples']} local samples" + ("" if d["epsilon"] is None else f", epsilon {d['epsilon']:.3f}")
        elif p.stage == "submitted":
            text = f"tx {str(d.get('hash', ''))[:12]} committed at height {d.get('height')}, position {d.get('position')}"
        else:
            done[0] += 1
            bar = "#" * done[0] + "." * (total - done[0])
            outcome = f"-> v{d['new_version']}" if d["status"] == "aggregated" else "(failed: no new version)"
            text = f"round {d['status']} with {d['accepted']} update(s) {outcome}  [{bar}]"
        print(f"[round {p.round}] {p.stage:<9} {text}", flush=True)

    return show
