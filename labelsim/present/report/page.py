"""The page shell of a run's report: CSS, the inlined Vega bundle and the script that embeds each
chart's Vega-Lite spec, so that the page renders with no network at all. Each chart's Vega
view is kept in ``window.labelsimViews`` by chart id, to inspect its scales and scenegraph.
"""

from __future__ import annotations

import functools
import html
import json
from typing import Iterable


@functools.lru_cache(maxsize=1)
def vega_bundle() -> str:
    """The Vega, Vega-Lite and vega-embed JavaScript, as one inline-safe string."""
    import altair as alt
    import vl_convert as vlc

    wanted = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    version = wanted if wanted in vlc.get_vegalite_versions() else None
    bundle = vlc.javascript_bundle(vl_version=version) if version else vlc.javascript_bundle()
    return bundle.replace("</script", "<\\/script").replace("</SCRIPT", "<\\/SCRIPT")


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1250px;color:#222;padding:0 1em}
h1{font-size:1.6em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
td,th{border:1px solid #ddd;padding:.2em .5em;text-align:right}
th{background:#f4f4f4} table.meta th,table.meta td{text-align:left}
td:first-child,th:first-child,td.t{text-align:left}
.wide{overflow-x:auto;max-width:100%}
.charts{display:flex;flex-wrap:wrap;gap:1.5em;align-items:flex-start}
pre{background:#f7f7f7;padding:1em;overflow:auto;font-size:.8em}
.chart{margin:.5em 0 1em;max-width:100%;overflow-x:auto}
.caption{color:#555;font-size:.9em;max-width:640px} nav a{margin-right:1em}
.banner{background:#fff4d6;border:1px solid #e0b84c;padding:.6em 1em;font-weight:bold}
.verdict{background:#eef4fb;border-left:4px solid #4c78a8;padding:.4em .8em}
"""

_EMBED = """
(function () {
  var specs = JSON.parse(document.getElementById("labelsim-specs").textContent);
  var options = {renderer: "svg", actions: {export: true, source: false, compiled: false,
                 editor: false}};
  window.labelsimViews = {};
  Object.keys(specs).forEach(function (id) {
    vegaEmbed("#" + id, specs[id], options).then(function (result) {
      window.labelsimViews[id] = result.view;
    }).catch(function (err) {
      document.getElementById(id).textContent = "chart failed to render: " + err;
    });
  });
})();
"""


def _slug(title: str) -> str:
    """The section's anchor: lower case, every other character than letters and digits a dash."""
    return "".join(ch if ch.isalnum() else "-" for ch in title.lower()).strip("-")


def render_page(
    title: str, sections: Iterable[tuple[str, str]], specs: dict[str, dict], bundle: str,
    banner: str = "",
) -> str:
    """The HTML page: sections (title, html), charts by id (each in a div of that id), and a
    ``banner`` line above everything when given (a run still in progress)."""
    sections = list(sections)
    top = f"<p class='banner' id='banner'>{html.escape(banner)}</p>" if banner else ""
    nav = "".join(f"<a href='#{_slug(t)}'>{html.escape(t)}</a>" for t, _ in sections)
    body = "".join(f"<section id='{_slug(t)}'><h2>{html.escape(t)}</h2>{content}</section>"
                   for t, content in sections)
    data = json.dumps(specs, separators=(",", ":")).replace("<", "\\u003c")
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>{top}<nav>{nav}</nav>{body}"
        f"<script type='application/json' id='labelsim-specs'>{data}</script>"
        f"<script>{bundle}</script><script>{_EMBED}</script></body></html>"
    )

