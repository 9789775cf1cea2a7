"""The one place that knows where the project's files are: compose templates and image contexts
(`compose/`), the guide's claims and the scenarios (`scenarios/`), the locustfiles (`loadtests/`) and
the base-image script (`scripts/make-base-image.sh`).

In a checkout (run from the tree or an editable install) they sit beside `lab/`, where users edit and
name them (`halab run scenarios/claims.yaml`). An installed package (`pip install .`, a wheel) carries
copies of them in `lab/assets/`, made by setup.py when the wheel is built; the checkout's own files win
whenever `lab/` is imported from a checkout.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

# The `lab` package folder. Docker reads build contexts and compose files from disk, so the package is
# used unpacked (as pip installs it), never from a zip.
PACKAGE = Path(str(resources.files("lab"))).resolve()


def _is_checkout(root: Path) -> bool:
    return (root / "pyproject.toml").is_file() and (root / "compose" / "images").is_dir()


# The repository root when `lab` is imported from a checkout, else None.
CHECKOUT: Path | None = PACKAGE.parent if _is_checkout(PACKAGE.parent) else None
ASSETS = CHECKOUT if CHECKOUT is not None else PACKAGE / "assets"
ROOT = ASSETS  # where compose/, scenarios/, loadtests/ and scripts/ are
COMPOSE = ASSETS / "compose"  # compose templates (haproxy.cfg.tmpl) and compose/images/
SCENARIOS = ASSETS / "scenarios"
LOADTESTS = ASSETS / "loadtests"
SCRIPTS = ASSETS / "scripts"
