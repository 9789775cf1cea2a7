"""The one place that knows where the repository's files are (the package runs from a checkout or
an editable install: compose templates, image contexts, scenarios and locustfiles sit beside `lab/`)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # lab/core/paths.py -> the repository
COMPOSE = ROOT / "compose"  # compose templates (haproxy.cfg.tmpl) and compose/images/
SCENARIOS = ROOT / "scenarios"
LOADTESTS = ROOT / "loadtests"
