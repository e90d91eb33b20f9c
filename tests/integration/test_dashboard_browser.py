"""The dashboard in a real headless Chromium (Debian's package, driven by Playwright) on a 4-validator testnet.

One testnet and one dashboard process serve every check, in the order a user
would meet them: each page loads with no console error and is photographed
(into the test's directory, and with FBCI_UPDATE_SCREENSHOTS=1 into
``docs/screenshots/`` for the README); an
alert committed on chain appears on the open Alerts page within 2 s with no
reload; a click acknowledges it, and the acknowledgement is a committed
``ids.ack_alert`` on another validator; a patient's chart plots exactly the
scores the chain's model gives that patient's vitals. The dashboard's key
(hospital0) is also an auditor's, so the Audit page shows a gateway's private
read from the validators' audit trails, proven against a certified anchor.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from client.dashboard.ward import score_windows
from client.predict import WINDOW_ROWS
from core.crypto import PrivateKey
from client.session import ChainSession, load_client_key
from devnet import catalog
from devnet.testnet import Testnet
from ids.deterioration import DeteriorationModel
from ids.vitals import STEP_H, generate_patient, news2_scores
from tests.client.dashboard.helpers import (
    CHROMIUM, CHROMIUM_ARGS, ChainThread, post_alert, require_binary, start_dashboard, wait_http,
)
from tests.ports import free_base_port

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
UPDATE_SCREENSHOTS = os.environ.get("FBCI_UPDATE_SCREENSHOTS") == "1"
"""The README's screenshots are refreshed only on request, so that a test run leaves the checkout clean."""
PAGES = ("patients", "alerts", "models", "network", "audit")
START_H = 24.0  # the generated ward's history at start (client.dashboard.ward.GeneratedFeed)


def _publish(shot: Path) -> None:
    if UPDATE_SCREENSHOTS:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, SCREENSHOTS / shot.name)


def _playwright():  # type: ignore[no-untyped-def]
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright for Python is missing: pip install playwright (the browser is Debian's chromium; "
                    "never 'playwright install')", pytrace=False)
    return sync_playwright


def _height(rpc_url: str) -> int:
    with ChainSession(rpc_url) as session:
        return session.run(lambda c: c.status()).height


def _on_chain_ack(rpc_url: str, key: PrivateKey, alert_id: int, from_height: int) -> tuple[str, int]:
    """(signer's account name, height) of the committed ids.ack_alert for ``alert_id``, read block by block."""
    with ChainSession(rpc_url, key) as session:
        tip = session.run(lambda c: c.status()).height
        for height in range(from_height, tip + 1):
            block = session.run(lambda c: c.get_block(height))
            for tx_hash in block.txs:
                info = session.run(lambda c: c.get_tx(tx_hash))
                if info.kind == "ids.ack_alert" and info.transaction().payload == {"alert_id": alert_id}:
                    assert info.receipt.ok, info.receipt
                    return info.receipt.result["acknowledged_by"], height
    raise AssertionError(f"no ids.ack_alert for alert {alert_id} in blocks {from_height}..{tip}")


def _grant_auditor(net: Testnet) -> None:
    """hospital0 (the dashboard's key) may read the audit trail too."""
    home = net.specs[0].home
    with ChainSession(net.specs[0].rpc_url, load_client_key("admin", home)) as admin:
        hospital = load_client_key("hospital", home).public_key.raw
        admin.submit_commit("acl.grant", {"public_key": hospital, "role": "auditor"})


def _gateway_read(net: Testnet) -> None:
    """A private read node0 records in its audit trail (made just before the Audit page is opened: the
    page shows each validator's newest events, and the dashboard's own reads are audited too)."""
    with ChainSession(net.specs[0].rpc_url, load_client_key("gateway", net.specs[0].home)) as gateway:
        gateway.run(lambda c: c.alerts_query(limit=1))


def train_deterioration(net: Testnet, tmp_path: Path, rounds: int) -> None:
    """Each of the four hospitals trains the deterioration model with DP (``fbci fl train``, real processes).

    Each trains on 12 patients, so four torch processes fit on two cores.
    """
    procs = []
    for i, spec in enumerate(net.specs):
        with open(tmp_path / f"train{i}.log", "wb") as out:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "cli.main", "fl", "train", "--home", str(spec.home), "--model", "deterioration",
                 "--dataset", "vitals", "--hospital-index", str(i), "--hospitals", "4", "--rounds", str(rounds),
                 "--samples", "12", "--dp-noise", "1.0", "--dp-clip", "1.0"], stdout=out, stderr=subprocess.STDOUT))
    for i, proc in enumerate(procs):
        assert proc.wait(timeout=240) == 0, (tmp_path / f"train{i}.log").read_text()[-2000:]


def _chain_rounds(rpc_url: str, key: PrivateKey) -> tuple[dict[int, str], int]:
    """Each aggregated deterioration round's accepted hospitals (names, sorted, as the page lists them)
    and the latest version, read from the chain."""
    with ChainSession(rpc_url, key) as session:
        rounds = session.rounds("deterioration")
        names = {}
        for r in rounds:
            for p in r.participants:
                names[p.sender] = session.run(lambda c: c.account_get(p.sender)).name
    accepted = {r.round: ", ".join(sorted(names[p.sender] for p in r.participants if p.excluded is None))
                for r in rounds if r.status == "aggregated"}
    return accepted, max(r.new_version or 0 for r in rounds)


def _model_weights(rpc_url: str, key: PrivateKey) -> tuple[object, dict[str, np.ndarray]]:
    with ChainSession(rpc_url, key) as reader:
        return reader.model_weights("deterioration")


def test_dashboard_in_chromium(testnet: Callable[..., Testnet], tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    chromium = require_binary(CHROMIUM, "chromium")
    sync_playwright = _playwright()
    # Rounds of 300 blocks: each closes when all four hospitals have submitted, however loaded the machine.
    # Reads are private (signed, audited) and each validator anchors its audit trail every 2 blocks.
    monkeypatch.setattr(catalog, "default_app_state",
                        lambda n: {"models": [s.to_doc() for s in catalog.default_models(n, round_length_blocks=300)],
                                   "read_policy": {}, "audit": {"anchor_every_blocks": 2}})
    net = testnet(4)
    net.wait_ready(60, min_height=1)
    port = free_base_port(1)
    log = tmp_path / "dashboard.log"
    # A ward that does not move during the test (one observation per hour), so its chart can be checked.
    proc = start_dashboard(net.specs[0].home, port, log, "--ward-size", "4", "--ward-step-s", "3600")
    base = f"http://127.0.0.1:{port}"
    chain = ChainThread()
    gateway = load_client_key("gateway", net.specs[0].home)
    reader = load_client_key("hospital", net.specs[0].home)  # the dashboard's key, an auditor's too
    rpc0, rpc2 = net.specs[0].rpc_url, net.specs[2].rpc_url
    try:
        chain(lambda: _grant_auditor(net))
        train_deterioration(net, tmp_path, rounds=2)  # so the pages show trained versions, rounds and privacy
        wait_http(f"{base}/patients", proc, log)
        with sync_playwright() as pw:
            for alert_class, severity in (("flooding", 3), ("replay", 2), ("data_alteration", 4)):  # no page empty
                chain(lambda: post_alert(rpc0, gateway, "gateway0", alert_class=alert_class, severity=severity))
            browser = pw.chromium.launch_persistent_context(  # a fresh user-data-dir per run
                str(tmp_path / "chromium"), executable_path=chromium, headless=True, args=CHROMIUM_ARGS,
                viewport={"width": 1400, "height": 1000})
            page = browser.new_page()
            errors: list[str] = []
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))

            def load(path: str, ready: str) -> None:
                page.goto(f"{base}{path}")
                page.wait_for_selector("#live.on", timeout=10_000)
                page.wait_for_selector(ready, timeout=10_000)
                name = path.strip("/").replace("/", "-")
                page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
                _publish(tmp_path / f"{name}.png")
                assert errors == [], f"console errors on {path}: {errors}"

            for name, ready in zip(PAGES, ("#ward tbody tr", "#alerts tbody tr", "section[data-model]",
                                           "#validators tbody tr", "#events tbody tr")):
                if name == "audit":
                    chain(lambda: _gateway_read(net))
                load(f"/{name}", ready)
                if name == "audit":  # the gateway's private read, from node0's trail, proven once anchored
                    read = page.locator("#events tbody tr", has_text="gateway0").filter(has_text="alerts_query")
                    read.filter(has_text="verified: anchored at height").first.wait_for(timeout=60_000)
                    page.screenshot(path=str(tmp_path / "audit.png"), full_page=True)
                    _publish(tmp_path / "audit.png")
                    assert errors == [], errors
                if name == "models":  # the page's provenance and curve are the chain's rounds and versions
                    accepted, latest = chain(lambda: _chain_rounds(rpc0, reader))
                    tables = page.locator('section[data-model="deterioration"] table')
                    shown = {int(r[0]): r[4] for r in (line.split("\t") for line in
                             tables.first.inner_text().splitlines()[1:]) if r[1] == "aggregated"}
                    assert shown == accepted
                    privacy = tables.nth(1).inner_text()
                    assert all(h in privacy for names in accepted.values() for h in names.split(", "))
                    points = page.evaluate("document.getElementById('eval-deterioration').data[0].x")
                    assert points == list(range(latest + 1))
                if name == "network":
                    assert page.locator("#validators tbody tr").count() == 4
                    assert page.locator("#validators .bad").count() == 0  # every validator reachable

            # With the page filtered to spoofing, a spoofing alert committed now shows up within 2 s with no
            # reload, and a flooding alert committed just before it never does.
            load("/alerts", "#alerts tbody tr")
            page.evaluate("window.__not_reloaded = true")
            drawn = int(page.evaluate("document.body.dataset.rendered"))
            page.select_option("#f-class", "spoofing")
            page.wait_for_function(f"Number(document.body.dataset.rendered) > {drawn}", timeout=10_000)
            assert page.locator("#alerts tbody tr").count() == 0
            other_id = chain(lambda: post_alert(rpc0, gateway, "gateway0", alert_class="flooding"))
            alert_id = chain(lambda: post_alert(rpc0, gateway, "gateway0", alert_class="spoofing", severity=4))
            row = page.locator(f'#alerts tr[data-alert="{alert_id}"]')
            row.wait_for(timeout=2_000)
            assert page.evaluate("window.__not_reloaded") is True
            assert "spoofing" in row.inner_text() and "critical" in row.inner_text()
            assert page.locator(f'#alerts tr[data-alert="{other_id}"]').count() == 0

            # Acknowledge it: the page shows who, and another validator has the signed transaction.
            from_height = chain(lambda: _height(rpc2))
            row.locator("button.ack").click()
            page.locator(f'#alerts tr[data-alert="{alert_id}"] .ackcell').get_by_text(
                "acknowledged by hospital0").wait_for(timeout=30_000)
            signer, height = chain(lambda: _on_chain_ack(rpc2, reader, alert_id, max(1, from_height - 1)))
            assert signer == "hospital0" and height >= from_height - 1
            page.select_option("#f-class", "")  # every class again, for the README's picture
            page.locator(f'#alerts tr[data-alert="{other_id}"]').wait_for(timeout=10_000)
            page.screenshot(path=str(tmp_path / "alerts.png"), full_page=True)
            _publish(tmp_path / "alerts.png")
            assert errors == [], errors

            # A patient's chart: its points are the chain's model applied to that patient's vitals.
            load("/patients/bed-02", "#trend .main-svg")
            traces = {t["name"]: t for t in page.evaluate(
                "Array.from(document.getElementById('trend').data, t => ({name: t.name, x: t.x, y: t.y}))")}
            _, weights = chain(lambda: _model_weights(net.specs[1].rpc_url, reader))
            model = DeteriorationModel.from_weights(weights)
            series = generate_patient("bed-02", np.random.default_rng(1))
            shown = int(round(START_H / STEP_H)) + 1
            expected = score_windows(model, series.obs[:shown])
            score = traces["deterioration score"]
            assert len(score["y"]) == shown - WINDOW_ROWS + 1 == len(expected)
            np.testing.assert_allclose(score["y"], expected, rtol=1e-9)
            np.testing.assert_allclose(score["x"], series.times_h[WINDOW_ROWS - 1:shown])
            assert traces["NEWS2"]["y"] == news2_scores(series.obs[:shown]).tolist()
            np.testing.assert_allclose(traces["heart_rate"]["y"], series.obs[:shown, 4])
            threshold = traces["alarm threshold"]["y"]
            assert threshold[0] == threshold[1] and 0 < threshold[0] < 1
            assert errors == [], errors
            browser.close()
    finally:
        chain.close()
        proc.terminate()
        proc.wait(timeout=10)
