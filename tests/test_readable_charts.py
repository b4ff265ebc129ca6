"""Readable charts (no browser): the sensitivity chart keeps to the measured sizes, labels never
overlap, small multiples share one accuracy scale, and the report shows what --simulate
measured and what the closed loop recommends."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from fake_run import write_fake_run
from labelsim.analysis import Analysis, analyze_run
from labelsim.analysis.budget import OPTIMIZED
from labelsim.present import charts
from labelsim.present.report import build_report, report_charts
from labelsim.present.report.rows import measured_sizes, noise_chart_rows
from labelsim.rundir import RunStore

MEASURED = (50.0, 200.0)


def _sensitivity_rows() -> list[dict]:
    """Needs within, beyond (an extrapolated million, 'never') and below the measured sizes."""
    inf = math.inf
    return [
        {"class": "cat", "slope": 0.30, "slope_lo": 0.10, "slope_hi": 0.50,
         "need": 1_000_000.0, "need_lo": 400.0, "need_hi": inf},
        {"class": "dog", "slope": 0.31, "slope_lo": -inf, "slope_hi": inf,
         "need": inf, "need_lo": 80.0, "need_hi": inf},
        {"class": "ship", "slope": 0.05, "slope_lo": 0.0, "slope_hi": 0.1,
         "need": 0.0, "need_lo": 0.0, "need_hi": 60.0},
        {"class": "bird", "slope": 0.32, "slope_lo": 0.2, "slope_hi": 0.4,
         "need": 120.0, "need_lo": 90.0, "need_hi": 150.0},
        {"class": "frog", "slope": 0.30, "slope_lo": 0.2, "slope_hi": 0.4,
         "need": 121.0, "need_lo": 100.0, "need_hi": 140.0},
        {"class": "deer"},  # no fits: left out
    ]  # fmt: skip


def _spec_parts(spec: dict) -> tuple[list[dict], dict, dict]:
    """The data rows, the x and y scales of a layered chart."""
    scales: dict[str, dict] = {}
    for layer in spec["layer"]:
        for channel in ("x", "y"):
            scale = layer["encoding"].get(channel, {}).get("scale")
            if scale:
                scales[channel] = scale
    return spec["data"]["values"], scales["x"], scales["y"]


def test_sensitivity_axes_keep_to_the_measured_sizes() -> None:
    spec = charts.chart_spec(charts.sensitivity_scatter(_sensitivity_rows(), MEASURED))
    rows, x_scale, y_scale = _spec_parts(spec)
    assert y_scale["domain"] == list(MEASURED) and y_scale["type"] == "log"
    lo, hi = MEASURED
    for r in rows:
        for field in ("need_shown", "need_lo_shown", "need_hi_shown", "label_y"):
            if r.get(field) is not None:
                assert lo <= r[field] <= hi, (r["class"], field, r[field])
        for field in ("slope", "slope_lo", "slope_hi", "label_x"):
            if r.get(field) is not None:
                assert x_scale["domain"][0] <= r[field] <= x_scale["domain"][1]
    by_class = {r["class"]: r for r in rows}
    assert set(by_class) == {"cat", "dog", "ship", "bird", "frog"}
    # beyond the sizes: on the top edge, the true value in the tooltip; below: bottom edge
    assert by_class["cat"]["need_shown"] == hi and by_class["cat"]["need"] == "1,000,000"
    assert by_class["cat"]["where"] == charts.BEYOND and by_class["dog"]["need"] == "never"
    assert by_class["ship"]["need_shown"] == lo and by_class["ship"]["where"] == charts.BELOW
    assert by_class["bird"]["need_shown"] == 120.0 and by_class["bird"]["where"] == charts.WITHIN
    tooltip = {t["field"] for layer in spec["layer"] for t in layer["encoding"].get("tooltip", [])}
    assert {"need", "need_ci", "where"} <= tooltip
    axis = next(layer["encoding"]["y"]["axis"] for layer in spec["layer"]
                if "axis" in layer["encoding"].get("y", {}))
    assert axis["values"][0] == lo and axis["values"][-1] == hi
    assert all(lo <= v <= hi for v in axis["values"])


def test_sensitivity_refuses_a_range_that_is_not_one() -> None:
    with pytest.raises(ValueError, match="not a range"):
        charts.sensitivity_scatter(_sensitivity_rows(), (200.0, 200.0))


def _label_boxes(rows: list[dict], frame: charts.Frame) -> list[tuple[float, ...]]:
    """Pixel boxes of the placed labels, as place_labels sized them."""
    boxes = []
    for r in rows:
        if r.get("label_x") is None:
            continue
        left, middle = frame.pixel(r["label_x"], r["label_y"])
        width = charts.CHAR_WIDTH * len(r["label"]) + 2
        boxes.append((left, middle - charts.LABEL_HEIGHT / 2, left + width,
                      middle + charts.LABEL_HEIGHT / 2))
    return boxes


def test_crowded_labels_never_overlap_and_stay_in_the_plot() -> None:
    frame = charts.Frame(200, 150, (0.0, 1.0), (10.0, 1000.0), y_log=True)
    points = [(f"class{k}", 0.5 + 0.004 * k, 100.0 * (1 + 0.01 * k)) for k in range(12)]
    spots = charts.place_labels(points, frame)
    rows = [{"label": text, "label_x": s[0], "label_y": s[1]} for (text, _, _), s in
            zip(points, spots) if s is not None]
    boxes = _label_boxes(rows, frame)
    assert 1 <= len(boxes) < len(points)  # some fit, the crowd does not
    for i, a in enumerate(boxes):
        assert a[0] >= -1e-6 and a[1] >= -1e-6 and a[2] <= 200 + 1e-6 and a[3] <= 150 + 1e-6
        for b in boxes[i + 1:]:
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), (a, b)
    # an isolated point always gets its label
    alone = charts.place_labels([("x", 0.5, 100.0)], frame)
    assert alone[0] is not None


def test_frame_maps_data_to_pixels_and_back() -> None:
    frame = charts.Frame(400, 300, (-1.0, 1.0), (10.0, 1000.0), y_log=True)
    assert frame.pixel(-1.0, 1000.0) == (0.0, 0.0)
    assert frame.pixel(0.0, 100.0) == pytest.approx((200.0, 150.0))
    assert frame.value(*frame.pixel(0.25, 37.0)) == pytest.approx((0.25, 37.0))


@pytest.fixture(scope="module")
def analysis(tmp_path_factory) -> Analysis:
    path = tmp_path_factory.mktemp("readable") / "run"
    write_fake_run(path, test_per_class=200)
    return analyze_run(path, n_boot=40)


def test_report_sensitivity_chart_spans_the_measured_sizes(analysis: Analysis) -> None:
    items = {cid: charts.chart_spec(chart) for cid, _, chart in report_charts(analysis)}
    _, _, y_scale = _spec_parts(items["sensitivity"])
    run = analysis.run
    sizes = [r.train_size * share for r in run.replicas
             for share in run.class_shares]
    assert y_scale["domain"][0] >= min(sizes) - 1e-6 and y_scale["domain"][1] <= max(sizes) + 1e-6
    assert tuple(y_scale["domain"]) == measured_sizes(analysis)


def _facet_y_scales(spec: dict) -> list[dict]:
    return [layer["encoding"]["y"]["scale"] for layer in spec["spec"]["layer"]]


def test_small_multiples_share_one_accuracy_scale_unless_asked(analysis: Analysis) -> None:
    rows = noise_chart_rows(analysis)
    shared = charts.chart_spec(charts.accuracy_vs_noise(rows))
    assert "resolve" not in shared or shared["resolve"]["scale"].get("y") != "independent"
    domains = {tuple(s["domain"]) for s in _facet_y_scales(shared)}
    assert len(domains) == 1
    lo, hi = domains.pop()
    assert 0.0 <= lo < hi <= 1.0
    values = [r[f] for r in rows for f in ("accuracy", "fit")
              if r.get(f) is not None and 0 <= r[f] <= 1]
    assert lo <= min(values) and max(values) <= hi  # every point and curve is on the scale
    own = charts.chart_spec(charts.accuracy_vs_noise(rows, independent_y=True))
    assert own["resolve"]["scale"]["y"] == "independent"
    assert all("domain" not in s for s in _facet_y_scales(own))
    items = {cid: charts.chart_spec(chart) for cid, _, chart in
             report_charts(analysis, independent_y=True)}
    assert items["accuracy_vs_size"]["resolve"]["scale"]["y"] == "independent"


def test_accuracy_domain_stays_in_zero_one() -> None:
    rows = [{"kind": "point", "accuracy": 0.99, "lo": 0.97, "hi": 1.02},
            {"kind": "curve", "fit": 0.5, "fit_lo": -0.1, "fit_hi": 0.6}]
    lo, hi = charts.accuracy_domain(rows)
    assert lo == 0.0 and hi == 1.0
    lo, hi = charts.accuracy_domain([{"accuracy": 0.8, "lo": 0.7, "hi": 0.9}])
    assert 0.6 < lo < 0.7 and 0.9 < hi < 1.0


# ---------------------------------------------------------------- --simulate in the report


def _fake_training(truth, test: int = 200):
    """A stand-in for run_grid: a finished run of the given custom replicas whose per-class
    accuracy follows the fake run's truth at each class's labels and noise, a little jitter."""
    rng = np.random.default_rng(3)

    def run_grid(config, out, *, resume=False, replicas=None, progress=True, grow=False):
        c = len(truth.classes)
        counts = np.zeros((len(replicas), c, c), dtype=np.int64)
        for i, spec in enumerate(replicas):
            acc = np.array([truth.accuracy(spec.class_sizes[k], spec.class_noise[k])[k]
                            for k in range(c)])
            right = np.round(np.clip(acc + rng.normal(0, 0.01, c), 0, 1) * test).astype(int)
            counts[i] = np.diag(right)
            counts[i, np.arange(c), (np.arange(c) + 1) % c] = test - right
        store = RunStore.create(Path(out), {"classes": list(truth.classes),
                                            "config": config.to_dict()}, replicas, c)
        store.rows = [dataclasses.replace(r, status="finished") for r in store.rows]
        store.counts = counts
        store.flush()
        return Path(out)

    return run_grid


@pytest.fixture(scope="module")
def simulated(tmp_path_factory) -> Path:
    """A fake run whose budget.json holds what `budget --simulate` saved."""
    from labelsim.commands import budget
    from labelsim.__main__ import build_parser

    run = tmp_path_factory.mktemp("simulated") / "run"
    truth = write_fake_run(run, test_per_class=200)
    patch = pytest.MonkeyPatch()
    patch.setitem(sys.modules, "labelsim.sim.runner",
                  types.SimpleNamespace(run_grid=_fake_training(truth)))
    try:
        args = build_parser().parse_args([
            "budget", str(run), "--budget", "40", "--tier", "crowd:0.04:0.20",
            "--tier", "expert:0.15:0.02", "--points", "4", "--simulate", "--repeats", "3"])
        assert budget.run(args) == 0
    finally:
        patch.undo()
    return run


def _page_and_specs(run: Path, out: Path, budget_file: Path | None = None) -> tuple[str, dict]:
    page = build_report(run, out=out, n_boot=20, budget_file=budget_file).read_text("utf-8")
    specs = json.loads(re.search(r"id='labelsim-specs'>(.*?)</script>", page, re.S).group(1))
    return page, specs


def test_report_shows_the_simulation_verdict_table_and_chart(simulated: Path,
                                                             tmp_path: Path) -> None:
    saved = json.loads((simulated / "analysis" / "budget.json").read_text())
    page, specs = _page_and_specs(simulated, tmp_path / "r.html")
    assert "Simulation: measured vs predicted" in page
    assert f"<b>Verdict:</b> {saved['simulation_verdict']}" in page.replace("&#x27;", "'")
    overall = [r for r in saved["simulation"] if r["class"] == "overall"]
    table = page[page.index("Simulation: measured vs predicted"):page.index("<details>")]
    for row in overall:  # each distinct plan once, under all its names
        name = " = ".join(row["names"])
        assert table.count(f"<td class='t'>{name}</td>") == 1
        assert f"{100 * row['measured']:.1f}%" in table
    chart = specs["budget_simulation"]
    plans = {r["plan"] for r in chart["data"]["values"]}
    assert plans == {" = ".join(r["names"]) for r in overall}
    measured = [r for r in chart["data"]["values"] if r["source"] == "measured"]
    for r in measured:  # the spread is one sd over the replicas, around the measured mean
        row = next(o for o in overall if " = ".join(o["names"]) == r["plan"])
        assert r["accuracy"] == pytest.approx(row["measured"])
        assert r["hi"] - r["accuracy"] == pytest.approx(row["measured_sd"])
    assert {r["source"] for r in chart["data"]["values"]} == {"measured", "predicted"}


def test_identical_plans_are_one_row_under_all_their_names(simulated: Path,
                                                          tmp_path: Path) -> None:
    saved = json.loads((simulated / "analysis" / "budget.json").read_text())
    overall = next(r for r in saved["simulation"] if r["class"] == "overall"
                   and OPTIMIZED not in r["names"])
    twin = dict(overall, strategy=f"{overall['strategy']} = twin strategy",
                names=[*overall["names"], "twin strategy"])
    saved["simulation"] = [twin if r is overall else r for r in saved["simulation"]]
    del saved["simulation_verdict"]  # an older answer: the report works the verdict out
    path = tmp_path / "budget.json"
    path.write_text(json.dumps(saved))
    page, specs = _page_and_specs(simulated, tmp_path / "r.html", path)
    name = " = ".join(twin["names"])
    assert page.count(f"<td class='t'>{name}</td>") == 1
    assert "<td class='t'>twin strategy</td>" not in page
    assert "<b>Verdict:</b> the optimized plan" in page
    assert sum(r["plan"] == name for r in specs["budget_simulation"]["data"]["values"]) == 2


def test_report_shows_the_closed_loop_recommendation(simulated: Path, tmp_path: Path) -> None:
    saved = json.loads((simulated / "analysis" / "budget.json").read_text())
    row = {"label": "round 1 plan", "stage": "rounds", "simple": False, "round": 1,
           "labels_per_class": {"a": 60, "b": 90}, "labels_per_tier": {"crowd": 150},
           "cost": 6.0, "replicas": 3, "measured": 0.81, "measured_se": 0.004,
           "measured_per_class": {}, "predicted": 0.8}
    saved["loop"] = {"recommended": "round 1 plan", "best_simple": "all crowd",
                     "verdict": "'round 1 plan' measured 81.0% on fresh repeats",
                     "expected": 0.8075, "expected_se": 0.0031,
                     "rounds": [row], "fresh": [row | {"stage": "fresh", "measured": 0.812}]}
    path = tmp_path / "budget.json"
    path.write_text(json.dumps(saved))
    page, _ = _page_and_specs(simulated, tmp_path / "r.html", path)
    loop = page[page.index("<h3 id='closed-loop'>"):]
    assert "Recommendation: round 1 plan (&#x27;round 1 plan&#x27; measured 81.0% on fresh " \
           "repeats)" in loop
    assert "fresh repeats" in loop and "round 1" in loop and "60-90" in loop
    assert "Expected before the fresh repeats: 80.8% +- 0.3" in loop


def test_no_simulation_no_section(analysis: Analysis, tmp_path: Path) -> None:
    from labelsim.analysis import saved_budget

    saved = saved_budget.SavedBudget(tmp_path, {"budget": 1})
    assert saved_budget.simulation_verdict_text(saved) is None
    assert saved_budget.loop_text(saved) is None and saved_budget.simulation_chart_rows(saved) == []
    page = build_report(analysis.run.path, out=tmp_path / "r.html", analysis=analysis)
    assert "Simulation: measured vs predicted" not in page.read_text("utf-8")


def test_strategies_that_buy_the_same_labels_are_one_row(simulated: Path, tmp_path: Path) -> None:
    saved = json.loads((simulated / "analysis" / "budget.json").read_text())
    groups: dict[str, list[str]] = {}
    for s in saved["strategies"]:
        key = json.dumps([c["labels"] for c in s["classes"]], sort_keys=True)
        groups.setdefault(key, []).append(s["strategy"])
    assert any(len(names) > 1 for names in groups.values())  # the scenario has twins
    page, _ = _page_and_specs(simulated, tmp_path / "r.html")
    table = page[page.index("Strategies at the same budget"):page.index("id='budget_curves'")]
    for names in groups.values():
        assert table.count(f"<td class='t'>{' = '.join(names)}</td>") == 1
    assert table.count("<tr>") == len(groups) + 1  # the header and one row per purchase
