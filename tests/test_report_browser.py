"""The report renders in a real browser: every chart draws, with no network at all, the
sensitivity chart's axis keeps to the measured sizes and no two texts of a chart overlap.

Runs headless Chromium (``chromium`` or ``chromium-browser`` on PATH) on a report of a fake
CIFAR-10 run with two models, a synthetic and a human noise model and a saved budget, so
that every kind of chart is on the page; skipped when no Chromium is installed.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from fake_run import write_fake_run
from labelsim.rundir import load_run

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


def _dump_dom(browser: str, root: Path, page: Path) -> str:
    """The page's DOM after its scripts ran, as headless Chromium leaves it."""
    dom = subprocess.run(
        [browser, *FLAGS, f"--user-data-dir={root / 'profile'}", "--virtual-time-budget=10000",
         "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    return dom.stdout


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
    (root / "dom.html").write_text(_dump_dom(browser, root, report), encoding="utf-8")
    return root


# Run in the page once its charts are drawn: for each chart id, the box on screen of every
# visible text of its SVG, and the domains of its x and y scales (from the Vega view the page
# keeps in window.labelsimViews); written into the DOM as JSON for --dump-dom.
_PROBE = """<script>
(function probe(ids, tries) {
  var views = window.labelsimViews || {};
  var drawn = ids.every(function (id) { return views[id] && document.querySelector("#" + id + " svg"); });
  if (!drawn && tries > 0) { setTimeout(function () { probe(ids, tries - 1); }, 100); return; }
  function visible(node) {
    for (; node && node.tagName !== "svg"; node = node.parentNode) {
      if (Number(getComputedStyle(node).opacity) === 0) { return false; }
    }
    return true;
  }
  var out = {};
  ids.forEach(function (id) {
    var view = views[id];
    var texts = Array.prototype.slice.call(document.querySelectorAll("#" + id + " svg text"))
      .filter(function (t) { return t.textContent.trim() && visible(t); })
      .map(function (t) {
        var r = t.getBoundingClientRect();
        return {text: t.textContent, box: [r.left, r.top, r.right, r.bottom]};
      });
    function domain(name) { try { return view.scale(name).domain(); } catch (e) { return null; } }
    out[id] = {texts: texts, x: view ? domain("x") : null, y: view ? domain("y") : null};
  });
  var pre = document.createElement("pre");
  pre.id = "labelsim-probe";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})(IDS, 100);
</script>"""
PROBED = ("sensitivity", "human_vs_synthetic", "accuracy_vs_size", "budget_curves")


@pytest.fixture(scope="module")
def probed(page: Path) -> dict:
    """What the probe measured on the rendered report, by chart id."""
    report = (page / "run" / "report.html").read_text(encoding="utf-8")
    probe = _PROBE.replace("IDS", json.dumps(PROBED))
    target = page / "probed.html"
    head, end, tail = report.rpartition("</body>")  # the last one: the bundle holds another
    target.write_text(head + probe + end + tail, encoding="utf-8")
    dom = _dump_dom(_browser(), page, target)
    found = re.search(r'<pre id="labelsim-probe">(.*?)</pre>', dom, re.S)
    assert found, "the probe found no drawn charts"
    return json.loads(html.unescape(found.group(1)))


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


def test_sensitivity_axis_lies_within_the_measured_sizes(page: Path, probed: dict) -> None:
    run = load_run(page / "run")
    sizes = [r.train_size * share for r in run.replicas for share in run.class_shares]
    lo, hi = probed["sensitivity"]["y"]
    assert min(sizes) * (1 - 1e-9) <= lo < hi <= max(sizes) * (1 + 1e-9)
    ticks = [t for t in probed["sensitivity"]["texts"] if re.fullmatch(r"[\d,]+", t["text"])]
    assert len(ticks) >= 2  # the y axis is labelled ...
    assert all(lo * (1 - 1e-9) <= float(t["text"].replace(",", "")) <= hi * (1 + 1e-9)
               for t in ticks)  # ... within the measured sizes only


def _overlap(a: list[float], b: list[float], slack: float = 0.5) -> bool:
    return (a[0] + slack < b[2] and b[0] + slack < a[2] and a[1] + slack < b[3]
            and b[1] + slack < a[3])


@pytest.mark.parametrize("chart_id", PROBED)
def test_no_two_texts_of_a_chart_overlap(probed: dict, chart_id: str) -> None:
    texts = probed[chart_id]["texts"]
    assert len(texts) > 5, texts  # the chart drew its axes and labels
    clashes = [(a["text"], b["text"]) for i, a in enumerate(texts) for b in texts[i + 1:]
               if _overlap(a["box"], b["box"])]
    assert not clashes, clashes
