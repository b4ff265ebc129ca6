"""Chart specs, the offline report page, chart export, and the analyze/report commands."""

from __future__ import annotations

import argparse
import csv
import html
import json
import re
from pathlib import Path

import pytest

from fake_run import write_fake_run
from labelsim.present import charts
from labelsim.analysis import Analysis, analyze_run
from labelsim.commands import analyze, report
from labelsim.present.report import build_report, report_charts

CHART_IDS = {
    "confusion_baseline", "confusion_diff_noise", "confusion_diff_size", "accuracy_vs_noise",
    "accuracy_vs_size", "pairs_vs_noise", "pairs_vs_size", "ranking_bump", "sensitivity",
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fake") / "run"
    write_fake_run(path, diverged=(3,), test_per_class=200)
    return path


@pytest.fixture(scope="module")
def analysis(run_dir: Path) -> Analysis:
    return analyze_run(run_dir, n_boot=40)


def _marks(spec: dict) -> list[str]:
    """Mark types anywhere in a (layered / faceted) spec."""
    found = []
    if "mark" in spec:
        mark = spec["mark"]
        found.append(mark if isinstance(mark, str) else mark["type"])
    for child in spec.get("layer", []):
        found += _marks(child)
    if "spec" in spec:
        found += _marks(spec["spec"])
    return found


def _encodings(spec: dict) -> set[str]:
    enc = set(spec.get("encoding", {}))
    for child in spec.get("layer", []):
        enc |= _encodings(child)
    if "spec" in spec:
        enc |= _encodings(spec["spec"])
    return enc


def test_every_builder_returns_the_expected_spec(analysis: Analysis) -> None:
    items = {cid: charts.chart_spec(chart) for cid, _, chart in report_charts(analysis)}
    assert set(items) == CHART_IDS
    assert sorted(_marks(items["confusion_baseline"])) == ["rect", "text"]
    assert {"x", "y", "color", "text"} <= _encodings(items["confusion_diff_noise"])
    diff_scale = items["confusion_diff_noise"]["layer"][0]["encoding"]["color"]["scale"]
    assert diff_scale["domain"][0] == -diff_scale["domain"][1]  # centred on zero
    assert sorted(_marks(items["accuracy_vs_noise"])) == ["area", "line", "point", "rule"]
    assert items["accuracy_vs_noise"]["facet"]["field"] == "class"
    assert items["accuracy_vs_size"]["spec"]["layer"][0]["encoding"]["x"]["scale"]["type"] \
        == "log"
    assert "line" in _marks(items["ranking_bump"]) and "text" in _marks(items["ranking_bump"])
    assert {"x", "x2", "y", "y2"} <= _encodings(items["sensitivity"])  # error bars both ways
    for spec in items.values():
        assert spec["$schema"].startswith("https://vega.github.io/schema/vega-lite/")
        json.dumps(spec, allow_nan=False)  # valid JSON: no NaN or infinity in the data


def test_builders_accept_plain_rows() -> None:
    rows = [{"true": t, "predicted": p, "count": float(i), "rate": 0.1, "count_diff": i - 4.0}
            for i, (t, p) in enumerate((t, p) for t in "ab" for p in "ab")]
    assert charts.chart_spec(charts.confusion_heatmap(rows))["layer"][0]["mark"]["type"] == "rect"
    pairs = [{"pair": "a->b", "train_size": s, "rate": 0.1, "lo": 0.05, "hi": float("nan")}
             for s in (100, 200)]
    spec = charts.chart_spec(charts.pair_confusions(pairs, "train_size"))
    assert spec["data"]["values"][0]["hi"] is None  # NaN became null


def test_report_is_offline_with_one_bundle_and_one_spec_per_chart(
    analysis: Analysis, tmp_path: Path
) -> None:
    path = build_report(analysis.run.path, out=tmp_path / "r.html", analysis=analysis)
    page = path.read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]*\bsrc\s*=", page, re.I)
    assert not re.search(r"<link\b", page, re.I)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert not re.search(r"""@import|url\(\s*["']?https?:""", page, re.I)
    assert page.count("window.vegaEmbed=") == 1  # one inlined bundle for the whole page
    blob = re.search(r"<script type='application/json' id='labelsim-specs'>(.*?)</script>",
                     page, re.S).group(1)
    specs = json.loads(blob)
    divs = re.findall(r"<div id='([a-z_]+)'></div>", page)
    assert sorted(divs) == sorted(specs) and set(specs) == CHART_IDS
    assert "Configuration" in page
    assert "diverged" in page and "fake cpu" in page
    # the sensitivity claims are the analysis's gated ones, word for word (or why none stands out)
    for key in ("noise_claim", "volume_claim"):
        claim = analysis.sensitivity[key]
        assert claim and html.escape(claim) in page
    assert "of its asymptote" not in page


def test_one_chart_exports_to_png_svg_json_and_html(tmp_path: Path) -> None:
    rows = [{"true": t, "predicted": p, "count": 1.0, "rate": 0.5} for t in "ab" for p in "ab"]
    written = charts.export_chart(charts.confusion_heatmap(rows), tmp_path / "c",
                                  ["png", "svg", "json", "html"])
    assert [p.suffix for p in written] == [".png", ".svg", ".json", ".html"]
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in (tmp_path / "c.svg").read_text()
    assert json.loads((tmp_path / "c.json").read_text())["layer"]
    assert "<script src" not in (tmp_path / "c.html").read_text()
    with pytest.raises(ValueError):
        charts.export_chart(charts.confusion_heatmap(rows), tmp_path / "d", ["pdf"])


# ---------------------------------------------------------------- commands


def _args(module, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return parser.parse_args(argv)


def test_analyze_prints_tables_and_writes_files(run_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "tables"
    assert analyze.run(_args(analyze, [str(run_dir), "--out", str(out), "--n-boot", "30"])) == 0
    text = capsys.readouterr().out
    assert "replica 3 (diverged at step 37)" in text
    assert "Ranking (1 = least accurate" in text and "cat->frog" in text
    for name in ("per_class.csv", "class_metrics.csv", "confusion.csv", "asymmetry.csv",
                 "fits_noise.csv", "fits_volume.csv", "excluded.csv", "fits.json"):
        assert (out / name).is_file(), name
    fits = json.loads((out / "fits.json").read_text())
    assert set(fits["noise"]) == set(fits["classes"]) and fits["excluded_replicas"] == [3]
    with (out / "class_metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert {"tpr", "fnr", "fpr", "tnr", "accuracy_x1000"} <= set(rows[0])


def test_analyze_on_an_unwritable_destination_still_prints(run_dir: Path, tmp_path: Path,
                                                           capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code = analyze.run(_args(analyze, [str(run_dir), "--out", str(blocker / "sub"),
                                       "--n-boot", "20"]))
    captured = capsys.readouterr()
    assert code == 1 and "Per class" in captured.out  # the tables are printed before the write
    assert "nothing written" in captured.err and "--out DIR" in captured.err and captured.err.count("\n") == 1


def test_report_command_writes_page_and_rejects_bad_input(run_dir: Path, tmp_path: Path,
                                                          capsys) -> None:
    page = tmp_path / "out" / "page.html"
    page.parent.mkdir()
    code = report.run(_args(report, [str(run_dir), "--out", str(page), "--n-boot", "20",
                                     "--formats", "json"]))
    assert code == 0 and page.is_file()
    assert (tmp_path / "out" / "charts" / "ranking_bump.json").is_file()
    assert report.run(_args(report, [str(run_dir), "--formats", "gif"])) == 2
    assert report.run(_args(report, [str(tmp_path / "missing")])) == 2
    err = capsys.readouterr().err
    assert "unknown format" in err and "Traceback" not in err


def test_analysis_imports_neither_plotting_nor_training_code() -> None:
    import subprocess
    import sys

    code = ("import sys, labelsim.analysis, labelsim.commands.analyze; "
            "print(sorted(m for m in ('altair', 'vl_convert', 'jax', 'flax') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------- budget, side by side, reference


def _budget_args(argv: list[str]) -> argparse.Namespace:
    from labelsim.commands import budget

    return _args(budget, argv)


@pytest.fixture(scope="module")
def saved_budget(run_dir: Path, tmp_path_factory) -> Path:
    from labelsim.commands import budget

    path = tmp_path_factory.mktemp("budget") / "budget.json"
    argv = [str(run_dir), "--budget", "60", "--tier", "crowd:0.04:0.20", "--tier",
            "expert:0.15:0.02", "--target", "0.85", "--points", "6", "--save", str(path)]
    assert budget.run(_budget_args(argv)) == 0
    return path


def test_budget_command_saves_its_answer(run_dir: Path, saved_budget: Path, tmp_path: Path,
                                         capsys) -> None:
    from labelsim.commands import budget

    data = json.loads(saved_budget.read_text())
    assert data["budget"] == 60 and data["measure"] == "mean per-class accuracy"
    assert data["strategies"][-1]["strategy"] == "optimized" and data["curves"]
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    argv = [str(run_dir), "--budget", "60", "--tier", "crowd:0.04:0.20", "--points", "3",
            "--save", str(blocker / "budget.json")]
    capsys.readouterr()
    code = budget.run(_budget_args(argv))
    out = capsys.readouterr().out
    assert code == 0 and "not saved for the report" in out and "--save FILE" in out
    assert not (run_dir / "analysis" / "budget.json").exists()  # --save replaced the default


def test_report_shows_a_saved_budget_with_its_chart(analysis: Analysis, saved_budget: Path,
                                                     tmp_path: Path) -> None:
    path = build_report(analysis.run.path, out=tmp_path / "r.html", analysis=analysis,
                        budget_file=saved_budget)
    page = path.read_text(encoding="utf-8")
    assert "<h2>Labeling budget</h2>" in page and "Optimized plan" in page
    assert "Strategies at the same budget" in page and "cost to reach target" in page
    specs = json.loads(re.search(r"id='labelsim-specs'>(.*?)</script>", page, re.S).group(1))
    spec = specs["budget_curves"]
    marks = [layer["mark"]["type"] for layer in spec["layer"]]
    assert marks == ["line", "rule", "point", "text", "rule"]  # curves, budget, plans, target
    assert spec["layer"][1]["data"]["values"][0]["cost"] == 60
    assert spec["layer"][0]["encoding"]["x"]["field"] == "cost"
    assert page.count("window.vegaEmbed=") == 1


def test_report_explains_a_budget_for_another_run(analysis: Analysis, tmp_path: Path) -> None:
    other = tmp_path / "budget.json"
    other.write_text(json.dumps({"budget": 1, "tiers": [], "classes": ["a", "b"], "plan": {},
                                 "strategies": [], "curves": []}))
    page = build_report(analysis.run.path, out=tmp_path / "r.html", analysis=analysis,
                        budget_file=other).read_text(encoding="utf-8")
    assert "Budget answer not shown" in page and "rerun the budget command" in page


def test_report_compares_models_noise_models_and_the_reference(tmp_path: Path) -> None:
    path = tmp_path / "run"
    write_fake_run(path, noise_levels=(0.0, 0.3), sizes=(5000, 50000), full_size=50000,
                   dataset="cifar10", noise_models=("shuffle", "human-aggre"),
                   models=("small_cnn", "lenet"))
    page = build_report(path, n_boot=20).read_text(encoding="utf-8")
    for title in ("Models and noise models", "Human vs synthetic noise", "Reference study"):
        assert f"<h2>{title}</h2>" in page
    assert "realized" in page and "Data Day Austin, 2020-01-25" in page
    specs = json.loads(re.search(r"id='labelsim-specs'>(.*?)</script>", page, re.S).group(1))
    assert {"compare_slopes", "transitions", "human_vs_synthetic", "reference",
            "reference_1"} <= set(specs)
    slopes = specs["compare_slopes"]
    assert slopes["facet"]["column"]["field"] == "model"
    assert slopes["spec"]["layer"][2]["encoding"]["xOffset"]["field"] == "noise_model"
    assert slopes["spec"]["layer"][2]["encoding"]["color"]["field"] == "noise_model"
    assert specs["transitions"]["facet"]["field"] == "noise_model"
    divs = re.findall(r"<div id='([a-z0-9_]+)'></div>", page)
    assert sorted(divs) == sorted(specs)


def test_report_on_an_unwritable_destination_is_an_os_error(run_dir: Path, tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code = report.run(_args(report, [str(run_dir), "--out", str(blocker / "page.html"), "--n-boot", "20"]))
    err = capsys.readouterr().err
    assert code == 1  # an OS error, as the command line's convention says (2 is bad input)
    assert "cannot write" in err and "--out FILE" in err and "Traceback" not in err
