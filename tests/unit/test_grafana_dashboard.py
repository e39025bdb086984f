"""docs/grafana-dashboard.json asks only for what aitasks exports: every metric its queries name is
one of `aitasks.metrics` (with the suffix Prometheus gives its type), grouped and filtered only by
labels that metric has; each panel has the description docs/grafana.md expands on."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.metrics import MetricWrapperBase

from aitasks import metrics

DOCS = Path(__file__).resolve().parents[2] / "docs"
METRIC = re.compile(r"\b(aitasks_[a-z_]+)")
LABELS = re.compile(r"(?:by \(([^)]*)\))|(?:([a-z_]+)\s*(?:=~|!=|=)\s*\")")
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum")}


def exported() -> dict[str, set[str]]:
    """Each series name aitasks exposes, with the labels it carries."""
    names: dict[str, set[str]] = {}
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            labels = set(value._labelnames)
            for suffix in SUFFIXES[value._type]:
                names[value._name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return names


def test_every_query_names_an_exported_metric_and_its_labels() -> None:
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    series = exported()
    queries = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert queries
    for query in queries:
        named = METRIC.findall(query)
        assert named, query
        for name in named:
            assert name in series, f"{name} is not exported ({query})"
        known = set().union(*(series[n] for n in named))
        for grouped, filtered in LABELS.findall(query):
            used = {label.strip() for label in grouped.split(",") if label.strip()}
            used |= {filtered} if filtered else set()
            assert used <= known, f"{used - known} not on {named} ({query})"


def test_each_panel_is_described() -> None:
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    described = (DOCS / "grafana.md").read_text()
    for panel in dashboard["panels"]:
        assert panel["description"], panel["title"]
        assert f"**{panel['title']}**" in described, panel["title"]
