"""The report renders in a real browser: every chart draws, with no network at all.

Runs headless Chromium (``chromium`` or ``chromium-browser`` on PATH) on a report of a fake
CIFAR-10 run with two models, a synthetic and a human noise model and a saved budget, so
that every kind of chart is on the page; skipped when no Chromium is installed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from fake_run import write_fake_run

BROWSERS = ("chromium", "chromium-browser")
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
)  # fmt: skip


def _browser() -> str:
    found = next((path for name in BROWSERS if (path := shutil.which(name))), None)
    if found is None:
        pytest.skip("no chromium or chromium-browser on PATH: install Chromium (e.g. "
                    "apt-get install chromium) to render the report in a browser")
    return found


def _budget(run: Path) -> None:
    from labelsim.commands import budget
    from labelsim.__main__ import build_parser

    args = build_parser().parse_args([
        "budget", str(run), "--budget", "600", "--tier", "crowd:0.04:0.20",
        "--tier", "expert:0.15:0.02", "--target", "0.8", "--points", "5"])
    assert budget.run(args) == 0


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    from labelsim.present.report import build_report

    browser = _browser()
    root = tmp_path_factory.mktemp("browser")
    run = root / "run"
    write_fake_run(run, noise_levels=(0.0, 0.3), sizes=(5000, 20000, 50000), full_size=50000,
                   dataset="cifar10", noise_models=("shuffle", "human-worse"),
                   models=("small_cnn", "lenet"))
    _budget(run)
    report = build_report(run, n_boot=20)
    dom = subprocess.run(
        [browser, *FLAGS, f"--user-data-dir={root / 'profile'}", "--virtual-time-budget=10000",
         "--dump-dom", report.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    (root / "dom.html").write_text(dom.stdout, encoding="utf-8")
    return root


def _chart_ids(page: Path) -> list[str]:
    html = (page / "run" / "report.html").read_text(encoding="utf-8")
    specs = re.search(r"id='labelsim-specs'>(.*?)</script>", html, re.S).group(1)
    return list(json.loads(specs))


def _div(dom: str, chart_id: str) -> str:
    """The rendered contents of a chart's div, up to the caption that follows it."""
    start = dom.index(f'<div id="{chart_id}"')
    end = dom.find("class=\"caption\"", start)
    return dom[start:end if end > 0 else None]


def test_every_chart_rendered(page: Path) -> None:
    dom = (page / "dom.html").read_text(encoding="utf-8")
    ids = _chart_ids(page)
    assert {"compare_slopes", "transitions", "human_vs_synthetic", "reference",
            "budget_curves", "accuracy_vs_size"} <= set(ids)
    for chart_id in ids:
        body = _div(dom, chart_id)
        assert "<svg" in body or "<canvas" in body, f"chart {chart_id} did not render"
    assert "chart failed to render:" not in dom.replace('"chart failed to render: " + err', "")


def test_nothing_refers_to_the_network(page: Path) -> None:
    dom = (page / "dom.html").read_text(encoding="utf-8")
    tags = re.findall(r"<(?:script|link|img|iframe|image|use|source|video|audio)\b[^>]*>", dom,
                      re.I)
    remote = [t for t in tags
              if re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", t, re.I)]
    assert not remote, remote[:3]
    assert not re.search(r"""url\(\s*["']?https?:""", dom, re.I)
