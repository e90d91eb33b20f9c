"""Every query of the shipped Grafana dashboard returns data from a real Prometheus scraping a real testnet.

Debian's ``prometheus`` scrapes the four validators' ``/metrics`` every
second. The test gives the chain something to count (IDS alerts, and a
committed transaction whose execution is refused: a second acknowledgement
of one alert sent while the first is pending), then asks Prometheus each
``expr`` of ``deploy/grafana/fbci.json`` (``$validator`` as Grafana's "All")
until every one answers with at least one series, and checks that the new
certificate metric names a validator the certificates lack or none.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from core.errors import ContractRejected
from client.session import ChainSession, load_client_key
from devnet.testnet import Testnet
from tests.client.dashboard.helpers import post_alert, require_binary, wait_http
from tests.ports import free_base_port

GRAFANA = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "fbci.json"
ALL_VALIDATORS = ".+"  # the dashboard variable's allValue


def dashboard_queries() -> list[tuple[str, str]]:
    doc = json.loads(GRAFANA.read_text())
    assert {v["name"] for v in doc["templating"]["list"]} >= {"validator", "datasource"}
    return [(panel["title"], target["expr"].replace("$validator", ALL_VALIDATORS))
            for panel in doc["panels"] for target in panel["targets"]]


def query(base: str, expr: str) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as response:
        answer = json.loads(response.read())
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def test_grafana_queries_return_data(testnet: Callable[..., Testnet], tmp_path: Path) -> None:
    prometheus = require_binary("prometheus", "prometheus")
    queries = dashboard_queries()
    assert len(queries) >= 13
    net = testnet(4)
    net.wait_ready(60, min_height=1)
    port = free_base_port(1)
    targets = [spec.rpc_url.removeprefix("http://") for spec in net.specs]
    config = tmp_path / "prometheus.yml"
    config.write_text(json.dumps({  # JSON is YAML
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "fbci", "metrics_path": "/metrics", "static_configs": [{"targets": targets}]}],
    }))
    log = tmp_path / "prometheus.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                 f"--web.listen-address=127.0.0.1:{port}"], stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/-/ready", proc, log)
        home = net.specs[0].home
        gateway = load_client_key("gateway", home)
        alert_ids = [post_alert(net.specs[0].rpc_url, gateway, "gateway0", alert_class=c)
                     for c in ("spoofing", "flooding")]
        with ChainSession(net.specs[1].rpc_url, load_client_key("hospital", net.specs[1].home)) as hospital:
            first = hospital.submit("ids.ack_alert", {"alert_id": alert_ids[0]})
            second = hospital.submit("ids.ack_alert", {"alert_id": alert_ids[0]})  # admitted: the first is pending
            hospital.wait_committed(first)
            with pytest.raises(ContractRejected, match="already acknowledged"):
                hospital.wait_committed(second)
        empty = queries
        deadline = time.monotonic() + 60
        while empty and time.monotonic() < deadline:
            empty = [(title, expr) for title, expr in empty if not query(base, expr)]
            if empty:
                time.sleep(1.0)  # Prometheus scrapes on its own 1 s clock: nothing in-process to wait on
        assert not empty, f"queries with no data after 60 s: {empty}\n{log.read_text(errors='replace')[-2000:]}"
        classes = {r["metric"]["alert_class"] for r in query(base, "fbci_ids_alerts_total")}
        assert classes == {"spoofing", "flooding"}
        reasons = {r["metric"]["reason"] for r in query(base, "fbci_txs_rejected_total")}
        assert reasons == {"contract_rejected"}
        names = {spec.name for spec in net.specs}
        for series in query(base, "fbci_certificate_missing_signatures_total"):
            assert series["metric"]["missing"] in names
        for series in query(base, "fbci_certificate_missing_validators"):
            assert 0 <= float(series["value"][1]) <= 1  # 4 validators: a certificate has at least 3 of them
    finally:
        proc.terminate()
        proc.wait(timeout=10)
