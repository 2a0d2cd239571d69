"""The daily dashboard in a real browser: a KPI report computed from a labelled-decisions frame, rendered, written,
loaded by headless Chromium (Debian's `chromium`, installed by scripts/browser.sh), and its figures found in the DOM
Chromium built."""

import hashlib
import shutil
import subprocess
from datetime import datetime, timezone
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from propensity.monitoring.dashboard import render_dashboard, write_dashboard
from propensity.monitoring.kpi import kpi_report

HOLDOUT_SHARE = 0.1
HOSTILE_VERSION = 'v2<script>alert("x")</script>&'
VOID_TAGS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


def chromium() -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.fail("chromium is not installed: run scripts/browser.sh (as root) to install Debian's chromium")
    return binary


def in_holdout(session_id: str) -> bool:
    """Holdout by a hash of the session id, as a router assigns it: stable per session, random across sessions."""
    return int(hashlib.sha256(session_id.encode()).hexdigest()[:8], 16) / 2**32 < HOLDOUT_SHARE


def labelled_frame(seed: int = 3) -> pd.DataFrame:
    """Sessions with 1-3 decisions each over two model versions; conversions Bernoulli (8 % targeted, 5 % holdout),
    lognormal order values; the targeted arm is treated when its score clears a threshold."""
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp("2024-03-01", tz="UTC")
    rows = []
    for i in range(6000):
        session_id = f"s-{i}"
        holdout = in_holdout(session_id)
        model_version = "v1" if i % 3 else HOSTILE_VERSION
        converted = rng.random() < (0.05 if holdout else 0.08)
        revenue = float(rng.lognormal(3.0, 0.5)) if converted else 0.0
        start = t0 + pd.Timedelta(seconds=int(rng.integers(0, 86400)))
        for k in range(int(rng.integers(1, 4))):
            propensity = float(rng.beta(2, 20))
            rows.append(
                {
                    "request_id": f"r-{i}-{k}",
                    "decided_at": start + pd.Timedelta(minutes=k),
                    "session_id": session_id,
                    "model_version": model_version,
                    "variant": "champion",
                    "propensity": propensity,
                    "holdout": holdout,
                    "treated": (not holdout) and propensity > 0.1,
                    "label": int(converted),
                    "revenue": revenue,
                }
            )
    return pd.DataFrame(rows)


def rendered_dom(page: Path, tmp_path: Path) -> "Dom":
    """The DOM headless Chromium built from the page (its own profile directory, so parallel runs do not collide)."""
    result = subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and "</html>" in result.stdout, f"chromium failed: {result.stderr[-2000:]}"
    return Dom(result.stdout)


class Dom(HTMLParser):
    """The elements of a serialised DOM: every tag with its attributes, and each element with an id with its text."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.by_id: dict[str, dict] = {}
        self._open: list[dict] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        element = {"tag": tag, "attrs": dict(attrs), "text": []}
        self.tags.append((tag, element["attrs"]))
        if "id" in element["attrs"]:
            self.by_id[element["attrs"]["id"]] = element
        if tag not in VOID_TAGS:
            self._open.append(element)

    def handle_endtag(self, tag):
        for i in range(len(self._open) - 1, -1, -1):
            if self._open[i]["tag"] == tag:
                del self._open[i:]
                return

    def handle_data(self, data):
        for element in self._open:
            element["text"].append(data)

    def text(self, element_id: str) -> str:
        assert element_id in self.by_id, f"no element #{element_id} in the rendered page"
        return " ".join("".join(self.by_id[element_id]["text"]).split())

    def attr(self, element_id: str, name: str) -> str:
        assert element_id in self.by_id, f"no element #{element_id} in the rendered page"
        return self.by_id[element_id]["attrs"][name]


def test_dashboard_renders_in_headless_chromium_with_its_figures(tmp_path):
    labelled = labelled_frame()
    report = kpi_report(labelled, HOLDOUT_SHARE)
    performance = {
        "n": 4210,
        "roc_auc": {"value": 0.7312, "low": 0.7101, "high": 0.7523},
        "log_loss": {"value": 0.2611, "low": 0.2502, "high": 0.2720},
        "ece": {"value": 0.0123, "low": 0.0061, "high": 0.0190},
        "calibration_slope": 0.97,
    }
    drift = {
        "drifted": True,
        "features": [
            {"name": "session_event_count", "statistic": 0.05, "threshold": 0.2, "drifted": False, "importance": 4.0},
            {"name": "cart_adds", "statistic": 0.9, "threshold": 0.2, "drifted": True, "importance": 5.0},
            {"name": "user_<purchases>_7d", "statistic": 0.3, "threshold": 0.2, "drifted": True, "importance": 1.0},
        ],
    }
    deployments = [{"at": "2024-03-01T09:00:00Z", "event": "promoted", "model_version": "v1", "variant": "champion"}]
    html = render_dashboard(
        generated_at=datetime(2024, 3, 2, 6, 0, tzinfo=timezone.utc),
        kpis=report,
        model={"version": "v1", "variant": "champion", "metrics": {"test_log_loss": 0.2626}},
        performance=performance,
        drift=drift,
        deployments=deployments,
    )
    page = write_dashboard(html, tmp_path / "dashboards", "2024-03-02")
    assert page == tmp_path / "dashboards" / "2024-03-02.html"
    assert page.read_text() == (tmp_path / "dashboards" / "latest.html").read_text()
    assert "http" not in html, "the page must be self-contained (no CDN, no network)"

    dom = rendered_dom(page, tmp_path)

    # The KPI report, independently: sessions by the hash, targeted conversion per model version.
    sessions = labelled.groupby("session_id").agg(
        model_version=("model_version", "first"), holdout=("holdout", "first"), converted=("label", "max")
    )
    groups = report["groups"]
    assert [(g["model_version"], g["variant"]) for g in groups] == [("v1", "champion"), (HOSTILE_VERSION, "champion")]
    for i, group in enumerate(groups):
        assert dom.attr(f"group-{i}", "data-model-version") == group["model_version"]
        mine = sessions[(sessions["model_version"] == group["model_version"]) & ~sessions["holdout"]]
        conversion = group["kpis"]["conversion_rate"]
        assert conversion["targeted"]["value"] == pytest.approx(mine["converted"].mean())
        card = dom.text(f"kpi-{i}-conversion_rate")
        assert f"{100 * conversion['targeted']['value']:.2f} %" in card
        assert f"{100 * conversion['holdout']['value']:.2f} %" in card
        assert f"lift {100 * conversion['relative_lift']:+.1f} %" in card
        assert float(dom.attr(f"kpi-{i}-conversion_rate", "data-lift")) == pytest.approx(conversion["relative_lift"])
        low, high = conversion["difference"]["low"], conversion["difference"]["high"]
        assert f"[{100 * low:+.2f} pts, {100 * high:+.2f} pts]" in card
        revenue = group["kpis"]["revenue_per_session"]
        assert f"{revenue['targeted']['value']:,.2f}" in dom.text(f"kpi-{i}-revenue_per_session")
        assert dom.by_id[f"kpi-chart-{i}"]["tag"] == "svg"
        assert group["model_version"] in dom.text(f"group-{i}")  # the hostile version shows as text ...
    assert not [t for t, _ in dom.tags if t == "script"]  # ... and never became an element

    assert dom.attr("srm", "data-failed") == "false" and "as configured" in dom.text("srm")
    assert dom.attr("regression", "data-failed") == "false"

    assert dom.attr("metric-roc_auc", "data-value") == "0.7312"
    assert "[0.7101, 0.7523]" in dom.text("metric-roc_auc") and "0.0123" in dom.text("metric-ece")
    assert dom.attr("drift", "data-drifted") == "true"
    bars = [a for t, a in dom.tags if t == "rect" and "data-feature" in a]
    # Ranked by importance x statistic / threshold: 5 x 4.5, then 1 x 1.5, then 4 x 0.25.
    assert [b["data-feature"] for b in bars] == ["cart_adds", "user_<purchases>_7d", "session_event_count"]
    assert [b["data-drifted"] for b in bars] == ["true", "true", "false"]
    assert "promoted" in dom.text("deployments") and dom.attr("deployments", "data-available") == "true"


def test_dashboard_with_nothing_matured_yet_still_renders_every_section(tmp_path):
    report = kpi_report(labelled_frame().iloc[:0], HOLDOUT_SHARE)
    html = render_dashboard(
        generated_at="2024-03-02T06:00:00Z", kpis=report, model={}, performance=None, drift=None, deployments=None
    )
    page = write_dashboard(html, tmp_path, datetime(2024, 3, 2, 6, tzinfo=timezone.utc))
    assert page.name == "2024-03-02.html"
    dom = rendered_dom(page, tmp_path)
    assert "No matured decisions yet" in dom.text("kpis-empty")
    for section in ("performance", "drift", "deployments"):
        assert dom.attr(section, "data-available") == "false"
    assert dom.attr("srm", "data-failed") == "false" and dom.attr("regression", "data-failed") == "false"
    with pytest.raises(ValueError):
        write_dashboard(html, tmp_path, "../../etc/passwd")
