"""How long each dashboard page takes to load on a 4-validator testnet, against the issue's 1 s bound.

A testnet of real validator processes gets ``--alerts`` IDS alerts (one
acknowledged in ten), then ``fbci dashboard`` starts beside validator 0. For
every page the bench measures, ``--repeats`` times, the page's JSON
(``/api/...``, what the page draws) over HTTP and the whole page in headless
Chromium (navigation until the page has drawn its data: ``body[data-rendered]``),
and prints the median and the worst beside the bound. One visit first warms
the browser's cache (Plotly's 4.6 MB bundle), as a clinician's would be. Without Chromium or
Playwright it measures the JSON only and says so.

Run: python -m bench.bench_dashboard [--alerts 300] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.common import table, write_result
from client.session import ChainSession, load_client_key
from devnet.testnet import Testnet
from tests.client.dashboard.helpers import CHROMIUM, CHROMIUM_ARGS, alert_payload, start_dashboard
from tests.ports import free_base_port

BOUND_S = 1.0
PAGES = {"patients": "/api/patients", "patients/bed-01": "/api/patients/bed-01", "alerts": "/api/alerts",
         "models": "/api/models", "network": "/api/network", "audit": "/api/audit"}


def _wait(url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)  # polling another process's socket


def _get_s(url: str) -> float:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as resp:
        resp.read()
    return time.perf_counter() - t0


def _browser_times(base: str, repeats: int, profile: Path) -> tuple[float, dict[str, list[float]]] | None:
    """(the cold first visit's seconds, each page's warm loads)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if not Path(CHROMIUM).exists():
        return None
    times: dict[str, list[float]] = {page: [] for page in PAGES}
    with sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(str(profile), executable_path=CHROMIUM, headless=True,
                                                        args=CHROMIUM_ARGS)
        tab = browser.new_page()
        t0 = time.perf_counter()
        tab.goto(f"{base}/patients")  # a clinician's browser has the page's scripts cached after the first visit
        tab.wait_for_selector("body[data-rendered]", timeout=30_000)
        cold = time.perf_counter() - t0
        for page in PAGES:
            for _ in range(repeats):
                t0 = time.perf_counter()
                tab.goto(f"{base}/{page}")
                tab.wait_for_selector("body[data-rendered]", timeout=30_000)
                times[page].append(time.perf_counter() - t0)
        browser.close()
    return cold, times


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--alerts", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fbci-bench-dashboard-") as tmp:
        out = Path(tmp)
        net = Testnet.create(4, out / "net", free_base_port(10))
        net.start()
        dashboard = None
        try:
            net.wait_ready(60, min_height=1)
            home = net.specs[0].home
            with ChainSession(net.specs[0].rpc_url, load_client_key("gateway", home)) as gw:
                hashes = [gw.submit("ids.alert", alert_payload("gateway0")) for _ in range(args.alerts)]
                ids = [int(gw.wait_committed(h).receipt.result["alert_id"]) for h in hashes]
            with ChainSession(net.specs[0].rpc_url, load_client_key("hospital", home)) as hospital:
                for h in [hospital.submit("ids.ack_alert", {"alert_id": i}) for i in ids[::10]]:
                    hospital.wait_committed(h)
            port = free_base_port(1)
            dashboard = start_dashboard(home, port, out / "dashboard.log")
            base = f"http://127.0.0.1:{port}"
            _wait(f"{base}/api/patients")
            api = {page: [_get_s(base + path) for _ in range(args.repeats)] for page, path in PAGES.items()}
            measured = _browser_times(base, args.repeats, out / "chromium")
        finally:
            if dashboard is not None:
                dashboard.terminate()
                dashboard.wait(timeout=10)
            net.stop_all()
    cold, browser = measured if measured is not None else (None, None)
    rows: list[dict[str, Any]] = []
    for page in PAGES:
        row: dict[str, Any] = {"page": page, "api_median_s": statistics.median(api[page]), "api_max_s": max(api[page])}
        if browser is not None:
            row |= {"browser_median_s": statistics.median(browser[page]), "browser_max_s": max(browser[page])}
        row["within_bound"] = max(row.get("browser_max_s", row["api_max_s"]), row["api_max_s"]) < BOUND_S
        rows.append(row)
    print(f"dashboard page loads, {args.alerts} alerts on chain, {args.repeats} loads each, bound {BOUND_S:g} s"
          + ("" if browser is not None else " (no Chromium/Playwright: JSON only)"))
    print(table(rows, [("page", "page", ""), ("api_median_s", "JSON median s", ".3f"), ("api_max_s", "JSON max s", ".3f"),
                       ("browser_median_s", "browser median s", ".3f"), ("browser_max_s", "browser max s", ".3f"),
                       ("within_bound", f"< {BOUND_S:g} s", "")]))
    path = write_result("dashboard", {"bound_s": BOUND_S, "alerts": args.alerts, "repeats": args.repeats,
                                      "browser": browser is not None, "cold_first_visit_s": cold, "rows": rows})
    if cold is not None:
        print(f"cold first visit (nothing cached): {cold:.3f} s")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
