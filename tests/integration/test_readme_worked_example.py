"""The README's worked example ("Roles, consent and audit"), command by command, as a user types it.

Every step is the ``fbci`` command the README shows, run as a subprocess in a
scratch directory: ``genesis init`` with the defaults (breast_cancer_fedavg
requires consent, reads are private), the four validators started (as ``fbci
node start`` each, through :class:`devnet.testnet.Testnet` so they always
stop), then a patient's proxy grants, the hospitals record their other
patients' decisions, two hospitals train, the proxy revokes, the next round
leaves the patient out, the proxy reads the history and the hospital the
provenance; an auditor is registered and a clinician issued; the clinician
scores the patient (``fbci predict --patient``); the auditor sees who read
that patient's predictions on the validator that served it and proves the
event against an anchor in a certified block.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devnet.testnet import Testnet
from tests.ports import free_base_port

pytestmark = pytest.mark.timeout(900)

REPO = Path(__file__).resolve().parents[2]
MODEL = "breast_cancer_fedavg"
PURPOSE = f"train:{MODEL}"
ANCHOR_WAIT_S = 120.0


def fbci(cwd: Path, *args: str) -> str:
    run = subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=cwd, capture_output=True, text=True,
                         timeout=600, stdin=subprocess.DEVNULL)
    print(f"$ fbci {' '.join(args)}\n{run.stdout}{run.stderr}")  # the transcript, shown with -s or on failure
    assert "Traceback" not in run.stdout + run.stderr, run.stderr
    assert run.returncode == 0, (args, run.stdout[-2000:], run.stderr[-2000:])
    return run.stdout


def train_both(cwd: Path) -> list[str]:
    """``for i in 0 1; do fbci fl train --home net/node$i ... --rounds 2 & done; wait``"""
    procs = [subprocess.Popen([sys.executable, "-m", "cli.main", "fl", "train", "--home", f"net/node{i}",
                               "--model", MODEL, "--hospital-index", str(i), "--hospitals", "4", "--rounds", "2"],
                              cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              stdin=subprocess.DEVNULL) for i in range(2)]
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        print(f"$ fbci fl train --home net/node{len(outs)} ...\n{out}{err}")
        assert proc.returncode == 0 and "Traceback" not in out + err, (out[-2000:], err[-2000:])
        outs.append(out)
    return outs


def consent_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if "] consent " in line]


def test_the_readme_worked_example_from_the_command_line(tmp_path: Path) -> None:
    work = tmp_path
    fbci(work, "genesis", "init", "--validators", "4", "--out", "net", "--base-port", str(free_base_port(8)))
    genesis = json.loads((work / "net" / "genesis.json").read_text())
    assert genesis["app_state"]["consent"]["required_for"] == ["breast_cancer", MODEL]
    assert genesis["app_state"]["read_policy"]["fl_model_get"] == "private"  # written out for the operator
    net = Testnet.load(work / "net")
    net.start()
    try:
        net.wait_ready(90, min_height=1)
        patient = fbci(work, "consent", "pseudonym", "--home", "net/node0", "--mrn", "breast_cancer/h0/0").strip()
        fbci(work, "consent", "issue-proxy", "--home", "net/node0", "--key", "hospital", "--patient", patient,
             "--name", "proxy-0", "--out", "proxy.json")
        fbci(work, "consent", "grant", "--home", "net/node0", "--key", "proxy.json", "--patient", patient,
             "--purpose", PURPOSE)
        fbci(work, "consent", "grant", "--home", "net/node0", "--key", "hospital", "--purpose", PURPOSE,
             "--mrn", *[f"breast_cancer/h0/{k}" for k in range(1, 10)])
        fbci(work, "consent", "grant", "--home", "net/node1", "--key", "hospital", "--purpose", PURPOSE,
             "--mrn", *[f"breast_cancer/h1/{k}" for k in range(0, 10)])
        first = train_both(work)
        assert re.search(r"consent +10 record\(s\) with consent, \d+ left out \(\d+ no permit\)",
                         consent_lines(first[0])[-1]), first[0]

        revoked = fbci(work, "consent", "revoke", "--home", "net/node0", "--key", "proxy.json", "--patient", patient,
                       "--purpose", PURPOSE)
        assert "it takes effect from the next round" in revoked
        assert int(re.search(r"(\d+) past round\(s\) that used the patient", revoked).group(1)) >= 1
        second = train_both(work)
        last = consent_lines(second[0])[-1]
        assert "9 record(s) with consent" in last and "1 revoked" in last, second[0]  # the next round left them out

        history = fbci(work, "consent", "history", "--home", "net/node0", "--key", "proxy.json", "--patient", patient)
        assert re.search(rf"permit {PURPOSE}", history) and re.search(rf"revoke {PURPOSE}", history), history
        assert re.search(rf"used by {MODEL} round \d+", history), history
        provenance = fbci(work, "consent", "provenance", "--home", "net/node0", "--key", "hospital", "--model", MODEL)
        assert "1 patient(s) withdrew consent" in provenance, provenance

        fbci(work, "keys", "gen", "--home", "auditor", "--name", "auditor0", "--roles", "auditor")
        auditor = json.loads((work / "auditor" / "public.json").read_text())["public_key"]
        fbci(work, "tx", "submit", "--home", "net/node0", "--key", "admin", "--kind", "acl.register", "--commit",
             "--payload", json.dumps({"name": "auditor0", "public_key": f"0x{auditor}", "roles": ["auditor"]}))
        fbci(work, "keys", "gen", "--home", "clinician", "--name", "dr-a", "--roles", "clinician")
        clinician = json.loads((work / "clinician" / "public.json").read_text())["public_key"]
        fbci(work, "tx", "submit", "--home", "net/node0", "--key", "hospital", "--kind", "acl.issue", "--commit",
             "--payload", json.dumps({"name": "dr-a", "public_key": f"0x{clinician}", "role": "clinician"}))
        scored = fbci(work, "predict", "--home", "net/node0", "--key", "clinician/config/node_key.json",
                      "--generate-patient", "7", "--patient", patient)
        assert "P(NEWS2 >= 5 within 6 h)" in scored

        key = "auditor/config/node_key.json"
        query = fbci(work, "audit", "query", "--net", "net", "--key", key, "--patient", patient)
        read = re.search(r"^(node\d) #(\d+) .* R fl_model_get .*patient=\w+ +by dr-a +outcome 0 ok$", query, re.M)
        assert read is not None, query  # who read that patient's prediction, on the validator that served it
        proven = f"{read.group(1)} #{read.group(2):<5} ok"
        deadline = time.monotonic() + ANCHOR_WAIT_S
        while proven not in (verified := fbci(work, "audit", "verify", "--net", "net", "--key", key,
                                              "--patient", patient)):
            assert time.monotonic() < deadline, verified  # the event waits for its validator's next anchor
            assert "FAIL" not in verified, verified
            time.sleep(1.0)  # polling the chain for the next anchor (every 10 blocks), bounded by the deadline
        assert "FAIL" not in verified and "anchored event(s) proven against anchors in certified blocks" in verified
    finally:
        net.stop_all()
