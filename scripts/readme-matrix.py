#!/usr/bin/env python3
"""Regenerate the README's measured tables from matrix runs, so that they are the runs' own.

Usage: scripts/readme-matrix.py CLAIMS_RUN CASES_RUN [README]
       scripts/readme-matrix.py --grid DOC RUN [RUN ...]

- CLAIMS_RUN: a matrix run directory (or its matrix.json) whose claims table goes between the
  README's `<!-- matrix-claims -->` markers (the default profile's 3-node run);
- CASES_RUN: a run whose 5-node split and pair-kill cases, with the leader on each side, go between
  the `<!-- matrix-leader -->` markers (the tuned profile's 1/3/5 run).

With `--grid`, the claims of several runs (profiles, sizes, placements of the database and the
load balancer) side by side, one column per run, go between DOC's `<!-- matrix-grid -->`
markers (docs/survivability.md), each column headed by where it came from.

Each table is introduced by where it came from: date, profile, machine, run time.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any


def load(path: str) -> dict[str, Any]:
    p = Path(path)
    data: dict[str, Any] = json.loads((p / "matrix.json" if p.is_dir() else p).read_text())
    return data


def origin(d: dict[str, Any], source: str) -> str:
    m = d.get("machine", {})
    return (
        f"`halab matrix --nodes {','.join(map(str, d['sizes']))} --profile {d['profile']}` on {d['date'][:10]}, "
        f"{m.get('cpus')} CPUs, {m.get('memory_gib')} GiB, Docker {m.get('docker')}: {len(d['cases'])} cases in "
        f"{d['seconds']:.0f} s (`{source}`)."
    )


def cell(text: object) -> str:
    return str(text).replace("|", "\\|")


def claims_table(d: dict[str, Any]) -> list[str]:
    def counts(x: dict[str, int]) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(x.items()))

    out = ["| claim | guide | model | observed | verdict | worst case |", "|---|---|---|---|---|---|"]
    out += [
        "| "
        + " | ".join(
            cell(v)
            for v in (c["id"], c["guide"], counts(c["predicted"]), counts(c["observed"]), c["verdict"], c["worst"])
        )
        + " |"
        for c in d["claims"]
    ]
    return out


def seconds(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f} s"


def leader_table(d: dict[str, Any]) -> list[str]:
    out = [
        "| case | fault | leader | observed | success from 8 s | writes back after | drain | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in d["cases"]:
        if c["size"] != 5 or "@leader-" not in c["case"]:
            continue
        m = c["measures"] or {}
        share = m.get("share")
        out.append(
            "| "
            + " | ".join(
                cell(v)
                for v in (
                    c["case"],
                    c["fault"],
                    c["leader"],
                    c["observed"],
                    "-" if share is None else f"{100 * share:.0f} %",
                    seconds(m.get("recover")),
                    seconds(m.get("drain")),
                    c["verdict"],
                )
            )
            + " |"
        )
    return out


def placement(d: dict[str, Any]) -> str:
    p = d.get("placement") or {}
    if not p:
        return "db dc-a, lb outside (not recorded: the defaults)"
    return f"db {p.get('db_dc')}, lb {p.get('lb_dc')}"


def grid_table(runs: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Claims x runs: each cell the verdict and the claim's worst case, shortened."""
    heads = [f"{d['profile']}, n{'/'.join(map(str, d['sizes']))}, {placement(d)}" for _, d in runs]
    out = ["| claim | guide | " + " | ".join(cell(h) for h in heads) + " |", "|---|---|" + "---|" * len(runs)]
    claims: dict[str, dict[str, Any]] = {}
    for _, d in runs:
        for c in d["claims"]:
            claims.setdefault(c["id"], c)
    for cid, first in claims.items():
        row = [cid, first["guide"]]
        for _, d in runs:
            c = next((x for x in d["claims"] if x["id"] == cid), None)
            row.append("-" if c is None else f"**{c['verdict']}** ({c['worst'].split(';')[0]})")
        out.append("| " + " | ".join(cell(v) for v in row) + " |")
    out += ["", "Runs:"] + [f"- {origin(d, src)}" for src, d in runs]
    return out


def replace(text: str, marker: str, lines: list[str]) -> str:
    begin, end = f"<!-- {marker} -->", f"<!-- /{marker} -->"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise SystemExit(f"the document has no {begin} ... {end} region")
    return pattern.sub(lambda _: "\n".join([begin, *lines, end]), text)


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[0] == "--grid":
        doc = Path(argv[1])
        doc.write_text(replace(doc.read_text(), "matrix-grid", grid_table([(a, load(a)) for a in argv[2:]])))
        return 0
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    readme = Path(argv[2] if len(argv) == 3 else "README.md")
    claims_run, cases_run = load(argv[0]), load(argv[1])
    text = readme.read_text()
    text = replace(text, "matrix-claims", [origin(claims_run, argv[0]), "", *claims_table(claims_run)])
    text = replace(text, "matrix-leader", [origin(cases_run, argv[1]), "", *leader_table(cases_run)])
    readme.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
