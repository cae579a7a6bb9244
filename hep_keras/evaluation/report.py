"""``metrics.json`` and ``report.md`` of a run directory."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for key, sub in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), sub, out)
    else:
        out[prefix] = value


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.4g}"
    return str(value)


def write_metrics(run_dir: Path, title: str, metrics: dict[str, Any], config: dict[str, Any], info: dict) -> None:
    """Write ``metrics.json`` (nested, as given) and ``report.md`` (verdicts or flat table + the figures).

    When ``metrics`` has a ``report_markdown`` string (verdicts in words and a table), it is the body of the
    report; otherwise every metric is listed in a flat table.
    """
    run_dir = Path(run_dir)
    metrics = dict(metrics)
    body = metrics.pop("report_markdown", None)
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True, default=float) + "\n")
    lines = [f"# {title}", "", f"Data: `{info.get('path', '?')}` ({info.get('n_events', '?')} events)", ""]
    notes = metrics.get("notes") if isinstance(metrics.get("notes"), list) else []
    lines += [f"- {note}" for note in notes]
    if body is not None:
        lines += ["", body, "All numbers: `metrics.json`."]
    else:
        flat: dict[str, Any] = {}
        _flatten("", metrics, flat)
        lines += ["", "| metric | value |", "|---|---|"]
        lines += [f"| {key} | {_fmt(value)} |" for key, value in flat.items() if not key.startswith("notes")]
    figures = sorted((run_dir / "figures").glob("*.png")) if (run_dir / "figures").exists() else []
    if figures:
        lines += ["", "## Figures", ""]
        lines += [f"![{fig.stem}](figures/{fig.name})" for fig in figures]
    lines += ["", "## Config", "", "```json", json.dumps(config, indent=2, sort_keys=True), "```", ""]
    (run_dir / "report.md").write_text("\n".join(lines))
