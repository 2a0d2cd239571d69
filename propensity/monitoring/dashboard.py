"""The daily merchandising dashboard: one self-contained HTML page (inline CSS and SVG, no script, no network).

What it shows, and the shapes it accepts (every key optional unless said; strings are escaped, numbers formatted):

- `kpis`: the dict `propensity.monitoring.kpi.kpi_report` returns, as it is.
- `model`: the live model, e.g. `{"version": "20240301-ab12", "variant": "champion", "trained_at": "...",
  "metrics": {"test_log_loss": 0.26, ...}}`. Scalar entries are listed; `metrics` (name -> number) is a table.
- `performance`: realised (or expected) quality on matured labels: `{"n": 1234, "roc_auc": {"value", "low",
  "high"}, "log_loss": {...}, "ece": {...}, "calibration_intercept": {...}, "calibration_slope": {...},
  "estimated": bool, "note": str}`. A known metric may be a bare number (no interval); other entries of the form
  `{"value", ...}` are shown under their own name.
- `drift`: `{"drifted": bool, "features": [{"name", "statistic", "threshold", "drifted", "importance"}, ...],
  "note": str}`. Features are ranked by importance x statistic / threshold; the top `DRIFT_TOP` are drawn.
- `deployments`: recent deployment events, newest first, e.g. `[{"at", "event", "model_version", "variant",
  "detail"}]`; the columns are the keys in the order they first appear.

Stable hooks for tests and scrapers: sections `#kpis`, `#model`, `#performance`, `#drift`, `#deployments` (the last
three with data-available); per group `#group-<i>` (data-model-version, data-variant) and its chart `#kpi-chart-<i>`;
per KPI `#kpi-<i>-<metric>` (data-targeted, data-holdout, data-difference, data-low, data-high, data-lift, and
data-trend: up or down only when the interval excludes 0, else flat); the checks `#srm` and `#regression`
(data-failed); `#metric-<name>` (data-value, data-low, data-high); `#drift-chart` with one `rect` per feature
(data-feature, data-statistic, data-threshold, data-drifted), in rank order.
"""

from __future__ import annotations

import math
from datetime import date, datetime
from html import escape
from pathlib import Path

from propensity.paths import write_text_atomic

DRIFT_TOP = 15
KPI_LABELS = {
    "conversion_rate": "Conversion rate",
    "average_order_value": "Average order value",
    "revenue_per_session": "Revenue per session",
}
PERFORMANCE_LABELS = {
    "roc_auc": "ROC-AUC",
    "log_loss": "Log-loss",
    "ece": "Expected calibration error",
    "calibration_intercept": "Calibration intercept",
    "calibration_slope": "Calibration slope",
}
CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:16px 28px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#c5cad6;font-size:13px}
main{padding:8px 28px 40px;max-width:1200px}
section{background:#fff;border:1px solid #dde1e8;border-radius:6px;margin:18px 0;padding:14px 20px}
h2{font-size:17px;margin:4px 0 12px}h3{font-size:15px;margin:10px 0}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.kpi{border:1px solid #dde1e8;border-radius:6px;padding:10px 14px;min-width:250px;flex:1}
.kpi .label{font-size:12px;color:#5b6475;text-transform:uppercase;letter-spacing:.04em}
.kpi .value{font-size:24px;font-weight:600}.kpi .vs{font-size:13px;color:#5b6475}
.kpi .lift{font-size:15px;font-weight:600}.up{color:#137333}.down{color:#b3261e}.flat{color:#5b6475}
.kpi .ci,.note{font-size:12px;color:#5b6475}
.banner{padding:8px 12px;border-radius:4px;margin:6px 0;font-size:14px}
.ok{background:#e6f4ea;color:#137333}.alarm{background:#fce8e6;color:#b3261e}.na{background:#eef0f4;color:#5b6475}
table{border-collapse:collapse;font-size:13px;margin:6px 0}
th,td{border-bottom:1px solid #e6e9ef;padding:5px 10px;text-align:left}th{color:#5b6475;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
svg text{font-size:11px;fill:#1d2330}svg .axis{stroke:#9aa3b2;stroke-width:1}
svg .zero{stroke:#1d2330;stroke-dasharray:3 3}svg .ci{stroke:#3c6fd1;stroke-width:3}svg .dot{fill:#1d2330}
svg .bar{fill:#3c6fd1}svg .bar.drifted{fill:#b3261e}
"""


def _e(value) -> str:
    """Escape anything for HTML text and attribute values."""
    return escape("" if value is None else str(value), quote=True)


def _num(x) -> float | None:
    """A finite float, or None."""
    if isinstance(x, bool) or x is None:
        return None
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _attr(x) -> str:
    """A number for a data attribute: full precision, empty when absent."""
    f = _num(x)
    return "" if f is None else _e(repr(f))


def _fmt_value(metric: str, x) -> str:
    f = _num(x)
    if f is None:
        return "—"
    return f"{100 * f:.2f} %" if metric == "conversion_rate" else f"{f:,.2f}"


def _fmt_difference(metric: str, x) -> str:
    f = _num(x)
    if f is None:
        return "unbounded"
    return f"{100 * f:+.2f} pts" if metric == "conversion_rate" else f"{f:+,.2f}"


def _fmt_lift(x) -> str:
    f = _num(x)
    return "—" if f is None else f"{100 * f:+.1f} %"


def _fmt_plain(x) -> str:
    if isinstance(x, bool):
        return "yes" if x else "no"
    f = _num(x)
    if f is None:
        return _e(x) if isinstance(x, str) else "—"
    return f"{f:.4f}" if abs(f) < 1000 else f"{f:,.0f}"


def _banner(element_id: str, failed: bool, text: str) -> str:
    css = "alarm" if failed else "ok"
    return f'<div id="{element_id}" class="banner {css}" data-failed="{str(failed).lower()}">{_e(text)}</div>'


def _unavailable(section_id: str, title: str, text: str) -> str:
    """A section with nothing to show yet: present, so the page's layout and hooks stay the same."""
    return (
        f'<section id="{section_id}" data-available="false"><h2>{_e(title)}</h2>'
        f'<p class="banner na">{_e(text)}</p></section>'
    )


def _interval_chart(element_id: str, rows: list[tuple[str, str, float | None, float | None, float | None]]) -> str:
    """A horizontal interval chart: one row per (key, label, estimate, low, high) on a shared axis with a dashed line
    at 0. An unbounded side runs to the edge of the chart."""
    width, left, right, row_h = 640, 170, 24, 26
    finite = [v for _, _, *values in rows for v in values if v is not None] + [0.0]
    lo, hi = min(finite), max(finite)
    span = (hi - lo) or 1.0
    lo, hi = lo - 0.08 * span, hi + 0.08 * span

    def x(v: float) -> float:
        return left + (v - lo) / (hi - lo) * (width - left - right)

    height = row_h * len(rows) + 30
    parts = [
        f'<svg id="{_e(element_id)}" data-kind="interval-chart" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img">',
        f'<line class="zero" x1="{x(0):.1f}" x2="{x(0):.1f}" y1="4" y2="{height - 24}"/>',
        f'<line class="axis" x1="{left}" x2="{width - right}" y1="{height - 22}" y2="{height - 22}"/>',
    ]
    for tick, anchor in ((lo, "start"), (0.0, "middle"), (hi, "end")):
        if tick == 0.0 and min(x(0.0) - x(lo), x(hi) - x(0.0)) < 75:
            continue  # too close to an end label to be read
        parts.append(f'<text x="{x(tick):.1f}" y="{height - 8}" text-anchor="{anchor}">{100 * tick:+.1f} %</text>')
    for i, (key, label, estimate, low, high) in enumerate(rows):
        y = 14 + i * row_h
        parts.append(f'<g data-metric="{_e(key)}"><text x="0" y="{y + 4}">{_e(label)}</text>')
        if estimate is not None:
            x1 = x(low) if low is not None else left
            x2 = x(high) if high is not None else width - right
            parts.append(f'<line class="ci" x1="{x1:.1f}" x2="{x2:.1f}" y1="{y}" y2="{y}"/>')
            parts.append(f'<circle class="dot" cx="{x(estimate):.1f}" cy="{y}" r="4"/>')
        else:
            parts.append(f'<text x="{left}" y="{y + 4}">no comparison</text>')
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


def _kpi_card(index: int, metric: str, kpi: dict) -> str:
    difference = kpi.get("difference") or {}
    lift = _num(kpi.get("relative_lift"))
    estimate, low, high = (_num(difference.get(k)) for k in ("estimate", "low", "high"))
    # Colour only a confirmed difference: an interval that straddles 0 is shown neutral, whatever the point estimate.
    trend = "up" if low is not None and low > 0 else "down" if high is not None and high < 0 else "flat"
    targeted, holdout = kpi.get("targeted") or {}, kpi.get("holdout") or {}
    if difference:
        ci = (
            f"difference {_fmt_difference(metric, estimate)} "
            f"[{_fmt_difference(metric, difference.get('low'))}, {_fmt_difference(metric, difference.get('high'))}]"
        )
    else:
        ci = f"no comparison: {kpi.get('note') or 'no data'}"
    return (
        f'<div class="kpi" id="kpi-{index}-{_e(metric)}" data-metric="{_e(metric)}" '
        f'data-targeted="{_attr(targeted.get("value"))}" data-holdout="{_attr(holdout.get("value"))}" '
        f'data-difference="{_attr(estimate)}" data-low="{_attr(difference.get("low"))}" '
        f'data-high="{_attr(difference.get("high"))}" data-lift="{_attr(lift)}" data-trend="{trend}">'
        f'<div class="label">{_e(KPI_LABELS.get(metric, metric))}</div>'
        f'<div class="value">{_fmt_value(metric, targeted.get("value"))}</div>'
        f'<div class="vs">targeted (n={_e(targeted.get("n", 0))}) vs holdout '
        f"{_fmt_value(metric, holdout.get('value'))} (n={_e(holdout.get('n', 0))})</div>"
        f'<div class="lift {trend}">lift {_fmt_lift(lift)}</div>'
        f'<div class="ci">{_e(ci)}</div></div>'
    )


def _kpi_section(kpis: dict) -> str:
    srm = kpis.get("sample_ratio") or {}
    overall = srm.get("overall") or {}
    regression = kpis.get("regression") or {}
    srm_failed, regression_failed = bool(srm.get("failed")), bool(regression.get("failed"))
    observed = _num(overall.get("observed_share"))
    srm_text = (
        f"Sample ratio: holdout {'—' if observed is None else f'{100 * observed:.2f} %'} of "
        f"{overall.get('sessions', 0)} sessions against {100 * (_num(kpis.get('holdout_share')) or 0):.2f} % "
        f"configured (always-valid test, alpha {overall.get('alpha', '')}): "
        + ("MISMATCH, the comparisons below cannot be trusted" if srm_failed else "as configured")
    )
    findings = regression.get("findings") or []
    regression_text = (
        "Regression: targeted worse than holdout beyond the tolerance on "
        + ", ".join(f"{f.get('metric')} ({f.get('model_version')}/{f.get('variant')})" for f in findings)
        if regression_failed
        else f"Regression check: no confirmed harm beyond {100 * (_num(regression.get('tolerance')) or 0):.1f} %"
    )
    parts = [
        '<section id="kpis"><h2>Intervention KPIs: targeted against the randomised holdout</h2>',
        _banner("srm", srm_failed, srm_text),
        _banner("regression", regression_failed, regression_text),
        f'<p class="note">{_e(kpis.get("sessions", 0))} sessions from {_e(kpis.get("decisions", 0))} matured '
        f"decisions; intervals are always-valid at alpha {_e(kpis.get('alpha', ''))}.</p>",
    ]
    groups = kpis.get("groups") or []
    if not groups:
        parts.append('<p class="banner na" id="kpis-empty">No matured decisions yet.</p>')
    for i, group in enumerate(groups):
        sessions = group.get("sessions") or {}
        treated = _num(group.get("treated_share"))
        parts.append(
            f'<div class="group" id="group-{i}" data-model-version="{_e(group.get("model_version"))}" '
            f'data-variant="{_e(group.get("variant"))}">'
            f"<h3>Model {_e(group.get('model_version'))} · variant {_e(group.get('variant'))}</h3>"
            f'<p class="note">{_e(sessions.get("targeted", 0))} targeted sessions '
            f"({'—' if treated is None else f'{100 * treated:.1f} %'} treated), "
            f'{_e(sessions.get("holdout", 0))} holdout sessions</p><div class="cards">'
        )
        group_kpis = group.get("kpis") or {}
        rows = []
        for metric in KPI_LABELS:
            kpi = group_kpis.get(metric)
            if kpi is None:
                continue
            parts.append(_kpi_card(i, metric, kpi))
            base = _num((kpi.get("holdout") or {}).get("value"))
            difference = kpi.get("difference") or {}
            relative = [
                None if base is None or base <= 0 or _num(difference.get(k)) is None else _num(difference[k]) / base
                for k in ("estimate", "low", "high")
            ]
            rows.append((metric, KPI_LABELS[metric], *relative))
        parts.append("</div>")
        parts.append('<p class="note">Difference relative to the holdout value, with its always-valid interval:</p>')
        parts.append(_interval_chart(f"kpi-chart-{i}", rows))
        parts.append("</div>")
    parts.append("</section>")
    return "".join(parts)


def _model_section(model: dict) -> str:
    scalars = [(k, v) for k, v in model.items() if k != "metrics" and not isinstance(v, (dict, list))]
    parts = ['<section id="model"><h2>Live model</h2><table>']
    parts += [f'<tr><th>{_e(k)}</th><td data-key="{_e(k)}">{_fmt_plain(v)}</td></tr>' for k, v in scalars]
    parts.append("</table>")
    metrics = model.get("metrics") or {}
    if metrics:
        parts.append("<h3>Training metrics</h3><table>")
        parts += [
            f'<tr><th>{_e(k)}</th><td class="num" data-model-metric="{_e(k)}">{_fmt_plain(v)}</td></tr>'
            for k, v in metrics.items()
        ]
        parts.append("</table>")
    parts.append("</section>")
    return "".join(parts)


def _performance_section(performance: dict | None) -> str:
    if not performance:
        return _unavailable("performance", "Model performance", "No matured labels yet.")
    estimated = bool(performance.get("estimated"))
    title = "Model performance (estimated from the scores)" if estimated else "Model performance on matured labels"
    parts = [
        f'<section id="performance" data-available="true" data-estimated="{str(estimated).lower()}">',
        f"<h2>{_e(title)}</h2>",
        f'<p class="note">n = {_e(performance.get("n", "—"))}</p>' if "n" in performance else "",
        "<table><tr><th>metric</th><th>value</th><th>interval</th><th></th></tr>",
    ]
    names = [k for k in PERFORMANCE_LABELS if k in performance]
    names += [k for k, v in performance.items() if k not in PERFORMANCE_LABELS and isinstance(v, dict) and "value" in v]
    for name in names:
        entry = performance[name]
        value, low, high = (
            (entry.get(k) for k in ("value", "low", "high")) if isinstance(entry, dict) else (entry, None, None)
        )
        interval = "—" if _num(low) is None and _num(high) is None else f"[{_fmt_plain(low)}, {_fmt_plain(high)}]"
        parts.append(
            f'<tr id="metric-{_e(name)}" data-value="{_attr(value)}" data-low="{_attr(low)}" data-high="{_attr(high)}">'
            f'<th>{_e(PERFORMANCE_LABELS.get(name, name))}</th><td class="num">{_fmt_plain(value)}</td>'
            f'<td class="num">{interval}</td><td>{_mini_interval(value, low, high)}</td></tr>'
        )
    parts.append("</table>")
    if performance.get("note"):
        parts.append(f'<p class="note">{_e(performance["note"])}</p>')
    parts.append("</section>")
    return "".join(parts)


def _mini_interval(value, low, high) -> str:
    """A small inline chart of one estimate and its interval, scaled to itself."""
    v, lo, hi = _num(value), _num(low), _num(high)
    if v is None:
        return ""
    lo_axis, hi_axis = min(v, lo if lo is not None else v), max(v, hi if hi is not None else v)
    pad = (hi_axis - lo_axis) * 0.15 or abs(v) * 0.05 or 0.01
    lo_axis, hi_axis = lo_axis - pad, hi_axis + pad

    def x(t: float) -> float:
        return 6 + (t - lo_axis) / (hi_axis - lo_axis) * 148

    line = (
        f'<line class="ci" x1="{x(lo):.1f}" x2="{x(hi):.1f}" y1="9" y2="9"/>'
        if lo is not None and hi is not None
        else ""
    )
    dot = f'<circle class="dot" cx="{x(v):.1f}" cy="9" r="3.5"/>'
    return f'<svg width="160" height="18" viewBox="0 0 160 18">{line}{dot}</svg>'


def _drift_section(drift: dict | None) -> str:
    if not drift:
        return _unavailable("drift", "Input drift", "No drift report yet.")
    drifted = bool(drift.get("drifted"))
    features = []
    for f in drift.get("features") or []:
        statistic, threshold = _num(f.get("statistic")), _num(f.get("threshold"))
        ratio = statistic / threshold if statistic is not None and threshold else None
        importance = _num(f.get("importance"))
        score = ratio * (importance if importance is not None else 1.0) if ratio is not None else None
        features.append((score if score is not None else -math.inf, ratio, f))
    features.sort(key=lambda t: t[0], reverse=True)
    top = features[:DRIFT_TOP]
    text = "Drift detected in the live inputs" if drifted else "No drift beyond the calibrated thresholds"
    parts = [
        f'<section id="drift" data-available="true" data-drifted="{str(drifted).lower()}"><h2>Input drift</h2>',
        f'<div class="banner {"alarm" if drifted else "ok"}">{_e(text)}</div>',
        f'<p class="note">Top {len(top)} of {len(features)} features by importance × statistic / threshold; '
        "the bar is the statistic over its threshold (the line at 1 is the threshold).</p>",
    ]
    width, left, right, row_h = 640, 210, 60, 20
    ratios = [r for _, r, _ in top if r is not None]
    scale_max = max([1.25, *ratios]) * 1.05
    height = row_h * len(top) + 26

    def x(r: float) -> float:
        return left + r / scale_max * (width - left - right)

    svg = [
        f'<svg id="drift-chart" data-kind="bar-chart" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img">',
        f'<line class="zero" x1="{x(1):.1f}" x2="{x(1):.1f}" y1="2" y2="{height - 20}"/>',
        f'<text x="{x(1):.1f}" y="{height - 6}" text-anchor="middle">threshold</text>',
    ]
    for i, (_, ratio, f) in enumerate(top):
        y = 4 + i * row_h
        is_drifted = bool(f.get("drifted"))
        svg.append(f'<text x="0" y="{y + 12}">{_e(f.get("name"))}</text>')
        svg.append(
            f'<rect class="bar{" drifted" if is_drifted else ""}" x="{left}" y="{y}" '
            f'width="{max(x(ratio or 0) - left, 1):.1f}" height="{row_h - 6}" data-feature="{_e(f.get("name"))}" '
            f'data-statistic="{_attr(f.get("statistic"))}" data-threshold="{_attr(f.get("threshold"))}" '
            f'data-drifted="{str(is_drifted).lower()}"/>'
        )
        svg.append(f'<text x="{x(ratio or 0) + 4:.1f}" y="{y + 12}">{"—" if ratio is None else f"{ratio:.2f}"}</text>')
    svg.append("</svg>")
    parts.append("".join(svg))
    parts.append(
        "<table><tr><th>feature</th><th>statistic</th><th>threshold</th><th>importance</th><th>drifted</th></tr>"
    )
    for _, _, f in top:
        parts.append(
            f'<tr data-feature="{_e(f.get("name"))}"><td>{_e(f.get("name"))}</td>'
            f'<td class="num">{_fmt_plain(f.get("statistic"))}</td>'
            f'<td class="num">{_fmt_plain(f.get("threshold"))}</td>'
            f'<td class="num">{_fmt_plain(f.get("importance"))}</td><td>{"yes" if f.get("drifted") else "no"}</td></tr>'
        )
    parts.append("</table>")
    if drift.get("note"):
        parts.append(f'<p class="note">{_e(drift["note"])}</p>')
    parts.append("</section>")
    return "".join(parts)


def _deployments_section(deployments: list[dict] | None) -> str:
    if not deployments:
        return _unavailable("deployments", "Recent deployments", "None recorded.")
    columns: list[str] = []
    for event in deployments:
        columns += [k for k in event if k not in columns]
    parts = ['<section id="deployments" data-available="true"><h2>Recent deployments</h2><table><tr>']
    parts += [f"<th>{_e(c)}</th>" for c in columns]
    parts.append("</tr>")
    for event in deployments:
        parts.append("<tr>" + "".join(f"<td>{_e(event.get(c, ''))}</td>" for c in columns) + "</tr>")
    parts.append("</table></section>")
    return "".join(parts)


def render_dashboard(
    *,
    generated_at: datetime | str,
    kpis: dict,
    model: dict,
    performance: dict | None,
    drift: dict | None,
    deployments: list[dict] | None,
) -> str:
    """The dashboard page (see the module docstring for the shapes)."""
    stamp = generated_at.isoformat(timespec="seconds") if isinstance(generated_at, datetime) else str(generated_at)
    body = "".join(
        [
            _kpi_section(kpis),
            _performance_section(performance),
            _drift_section(drift),
            _model_section(model),
            _deployments_section(deployments),
        ]
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Purchase propensity · {_e(stamp)}</title><style>{CSS}</style></head><body>"
        f'<header><h1>Purchase propensity: daily report</h1><p id="generated-at" data-generated-at="{_e(stamp)}">'
        f"Generated {_e(stamp)} · model {_e(model.get('version', '—'))}</p></header><main>{body}</main></body></html>\n"
    )


def write_dashboard(html: str, directory: Path | str, day: date | str) -> Path:
    """Write `<directory>/<day>.html` and `latest.html` (each atomically) and return the day's page. The page is
    written as ASCII with character references, so it reads the same whatever the machine's locale."""
    if isinstance(day, datetime):
        day = day.date()
    elif isinstance(day, str):
        day = date.fromisoformat(day)  # refuses anything that is not a date, so no path can be smuggled in
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    text = html.encode("ascii", "xmlcharrefreplace").decode("ascii")
    page = directory / f"{day.isoformat()}.html"
    write_text_atomic(page, text)
    write_text_atomic(directory / "latest.html", text)
    return page
