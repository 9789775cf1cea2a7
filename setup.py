"""Build hook: a wheel carries the files `lab` reads at run time (lab/core/paths.py) in lab/assets/.

In the repository they stay where users name and edit them (compose/, scenarios/, loadtests/,
scripts/); building a wheel copies them into the package. An editable install reads the checkout's
own files and copies nothing. Everything else is declared in pyproject.toml.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
# the folders lab/core/paths.py finds under lab/assets/: copied whole, but scripts/ only what the package runs
ASSETS = {
    "compose": None,
    "scenarios": None,
    "loadtests": None,
    "scripts": ("make-base-image.sh",),
}


class BuildWithAssets(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "lab" / "assets"
        shutil.rmtree(target, ignore_errors=True)  # nothing stale from an earlier build
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        for folder, only in ASSETS.items():
            src = HERE / folder
            if only is None:
                shutil.copytree(src, target / folder, ignore=ignore)
            else:
                (target / folder).mkdir(parents=True, exist_ok=True)
                for name in only:
                    shutil.copy2(src / name, target / folder / name)


setup(cmdclass={"build_py": BuildWithAssets})
