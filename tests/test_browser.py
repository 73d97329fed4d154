"""Every notebook in a real browser: JupyterLab under Debian's headless Chromium, driven by Selenium.

Each notebook (a copy, so nothing is saved over the committed one) is opened,
its outputs cleared and all cells run; the run is finished when every code
cell's prompt shows a number. It fails on an error output, on a widget that
did not render, and on a picture that is not an image. A screenshot of every
notebook is saved in ``.lab/screenshots/`` for people to look at. Selenium
uses the Debian browser and driver by path, offline (no driver download).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SCREENSHOTS = ROOT / ".lab" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
START_TIMEOUT = 90.0
RUN_TIMEOUT = 300.0
SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false"},
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
}

# What the page reports about the notebook open in the main area (window.jupyterapp, exposed by the server flag).
READY = """
const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
return Boolean(panel && panel.sessionContext && panel.sessionContext.session
    && panel.sessionContext.session.kernel && panel.sessionContext.session.kernel.status === 'idle'
    && panel.content && panel.content.widgets.length > 0);
"""
CLEAR = "window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs');"
RUN_ALL = "window.jupyterapp.commands.execute('notebook:run-all-cells');"
TO_TOP = """
for (const node of document.querySelectorAll('.jp-Notebook, .jp-WindowedPanel-outer')) node.scrollTop = 0;
window.dispatchEvent(new Event('resize'));
"""
PROMPTS = "return [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')].map(p => p.innerText.trim());"
REPORT = """
const panel = window.jupyterapp.shell.currentWidget;
const report = {errors: [], widgets: 0, images: 0, bareObjects: [], renderedWidgets: 0, renderedImages: 0};
for (const cell of panel.content.widgets) {
  if (cell.model.type !== 'code') continue;
  for (const output of cell.model.outputs.toJSON()) {
    if (output.output_type === 'error') report.errors.push(output.ename + ': ' + output.evalue);
    const data = output.data || {};
    if (data['application/vnd.jupyter.widget-view+json']) report.widgets += 1;
    if (data['image/png']) report.images += 1;
    const plain = [].concat(data['text/plain'] || []).join('');
    if (!data['image/png'] && /^(<Axes|<Figure|<plot:|Text\\()/.test(plain)) report.bareObjects.push(plain);
  }
}
report.renderedWidgets = [...document.querySelectorAll('.jp-OutputArea-output')]
  .filter(node => node.querySelector('.jupyter-widgets') && node.offsetHeight > 0).length;
report.renderedImages = [...document.querySelectorAll('.jp-OutputArea-output[data-mime-type="image/png"] img')]
  .filter(img => img.complete && img.naturalWidth > 0).length;
const scrollers = '.jp-Notebook, .jp-WindowedPanel-outer, .jp-WindowedPanel-inner';
report.height = Math.max(...[...document.querySelectorAll(scrollers)].map(n => n.scrollHeight));
return report;
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(condition: Any, timeout: float, what: str) -> Any:
    """Poll ``condition()`` until it is truthy; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"{what} did not happen within {timeout:.0f} s", pytrace=False)


def numbered(prompt: str) -> bool:
    """True for an input prompt that shows an execution count, ``[3]:``."""
    return prompt.strip("[]: ").isdigit()


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A JupyterLab server on a free port over a copy of the notebooks: (base URL, token)."""
    require(CHROMIUM.is_file() and CHROMEDRIVER.is_file(), "Debian's chromium and chromium-driver")
    home = tmp_path_factory.mktemp("lab")
    shutil.copytree(ROOT / "notebooks", home / "notebooks")
    for name, values in SETTINGS.items():
        target = home / "settings" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(values))
    port, token = free_port(), secrets.token_hex(16)
    environment = dict(
        os.environ,
        JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        OCILAB_WORKSPACE=str(home / "ocilab-lab"),
        OCILAB_PROGRESS="off",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--ServerApp.port={port}"]
    command += ["--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}", "--LabApp.expose_app_in_browser=True"]
    command += [f"--ServerApp.root_dir={home / 'notebooks'}", "--ServerApp.port_retries=0"]
    command += ["--allow-root"] if os.geteuid() == 0 else []
    log = (home / "lab.log").open("wb")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=environment)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: server.poll() is not None or answers(f"{base}/api?token={token}"), START_TIMEOUT, "JupyterLab")
        assert server.poll() is None, (home / "lab.log").read_text()[-3000:]
        yield base, token
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


@pytest.fixture(scope="module")
def browser(lab: tuple[str, str]) -> Iterator[Any]:
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never download a browser or a driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_runs_clean_in_jupyterlab(notebook: Path, lab: tuple[str, str], browser: Any) -> None:
    base, token = lab
    browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    browser.get(f"{base}/lab/tree/{notebook.name}?reset&token={token}")
    wait_for(lambda: browser.execute_script(READY), START_TIMEOUT, f"{notebook.name} opening with an idle kernel")
    browser.execute_script(CLEAR)
    wait_for(lambda: not any(map(numbered, browser.execute_script(PROMPTS))), 30, f"{notebook.name}'s outputs clearing")
    browser.execute_script(RUN_ALL)
    wait_for(lambda: all(map(numbered, browser.execute_script(PROMPTS))), RUN_TIMEOUT, f"{notebook.name} running")
    # Widgets and images render a moment after the reply that numbers the prompt: give them a while.
    deadline = time.monotonic() + 30
    while (report := browser.execute_script(REPORT)) and time.monotonic() < deadline:
        if report["renderedWidgets"] >= report["widgets"] and report["renderedImages"] >= report["images"]:
            break
        time.sleep(0.5)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    # A viewport as tall as the notebook (windowingMode none renders every cell), so one picture shows it all.
    height = min(int(report["height"]) + 300, 16000)
    metrics = {"width": 1400, "height": height, "deviceScaleFactor": 1, "mobile": False}
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    browser.execute_script(TO_TOP)
    time.sleep(1)  # let the taller window lay out before the picture is taken
    browser.save_screenshot(str(SCREENSHOTS / f"{notebook.stem}.png"))
    report.pop("height")
    assert report["errors"] == [], report
    assert report["bareObjects"] == [], report
    assert report["renderedImages"] == report["images"], report
    assert report["renderedWidgets"] == report["widgets"], report
