#!/usr/bin/env python3
"""Regenerate docs/dashboard/*.png: a real `gpufleet serve` on the example lab with a few jobs,
a booking, a drained node, seen through headless chromium (Debian's chromium + chromium-driver).

    .venv/bin/python scripts/dashboard-screenshots.py [OUT_DIR]
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent / "gpufleet"
SERIES = "resnet50-train/images_per_s/batch=256/A100-SXM4-80GB/560.35"
PAGES = [("login", "/login"), ("queue", "/queue"), ("job", "/jobs/1"), ("nodes", "/nodes"),
         ("bookings", "/bookings"), ("usage", "/usage?from=-1d"), ("health", "/health"),
         ("performance", "/performance"), ("trend", "/performance?series=" + SERIES.replace("=", "%3D"))]


def browser(width: int = 1360, height: int = 900):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--hide-scrollbars"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")), options=opts)


def start_server(home: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "GPUFLEET_HOME": str(home)}
    env.pop("GPUFLEET_TOKEN", None)
    proc = subprocess.Popen([str(BIN), "serve", "--port", str(port), "--inventory", str(ROOT / "examples/lab.yaml")],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    proc.terminate()
    raise SystemExit("the server did not start")


def seed(url: str, token: str) -> None:
    h = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url + "/api/v1", headers=h, timeout=10) as c:
        c.post("/jobs", json={"name": "train-resnet", "gpus": 2, "gpu_model": "a100", "command":
               ["sh", "-c", "for i in $(seq 1 400); do echo step $i loss 0.$((900 - i)); sleep 0.5; done"]})
        c.post("/jobs", json={"name": "eval", "gpus": 1, "gpu_model": "rtx4090", "command": ["sh", "-c", "echo ok"]})
        c.post("/jobs", json={"name": "big-sweep", "gpus": 4, "gpu_model": "a100", "command": ["sleep", "600"]})
        c.post("/jobs", json={"name": "too-big-now", "gpus": 8, "gpu_model": "a100", "command": ["sleep", "60"]})
        c.post("/bookings", json={"start": "+2h", "duration": "20h", "nodes": ["desk-001"], "name": "demo day"})
        c.post("/nodes/orin1/drain", json={"reason": "fan noise"})
        c.post("/results/import", content=_results().encode())
    time.sleep(3)


def _results() -> str:
    """A benchmark series that drops 8% at run 60, one node 12% slow."""
    import json
    import random

    rng, out = random.Random(1), []
    for i in range(90):
        node = f"dgx{i % 4}"
        v = 2800.0 * (0.92 if i >= 60 else 1.0) * (0.88 if node == "dgx2" else 1.0)
        out.append(json.dumps({"benchmark": "resnet50-train", "metric": "images_per_s", "value": rng.gauss(v, 15),
                               "unit": "img/s", "params": {"batch": 256}, "node": node, "sku": "A100-SXM4-80GB",
                               "driver": "560.35", "commit": f"c{i}", "timestamp": time.time() - (90 - i) * 3600}))
    return "\n".join(out) + "\n"


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs/dashboard"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        proc, url = start_server(home)
        try:
            token = (home / "admin.token").read_text().strip()
            seed(url, token)
            b = browser()
            try:
                b.get(url + "/login")
                b.save_screenshot(str(out / "login.png"))
                b.find_element("id", "token").send_keys(token)
                b.find_element("id", "signin").click()
                for name, path in PAGES[1:]:
                    b.get(url + path)
                    time.sleep(1.5 if name == "job" else 0.3)
                    height = b.execute_script("return document.documentElement.scrollHeight")
                    b.set_window_size(1360, min(max(700, height + 20), 2400))
                    b.save_screenshot(str(out / f"{name}.png"))
                    print(out / f"{name}.png")
            finally:
                b.quit()
        finally:
            subprocess.run([str(BIN), "cancel", "1", "3", "4"], env={**os.environ, "GPUFLEET_HOME": str(home),
                           "GPUFLEET_URL": url, "GPUFLEET_TOKEN": token}, capture_output=True)
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
