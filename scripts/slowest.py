"""The slowest tests of a run, from pytest's junit XML (``--junitxml``).

    python scripts/slowest.py test-artifacts/junit.xml                 # the 20 slowest
    python scripts/slowest.py AFTER.xml --before BEFORE.xml -n 20      # before/after table
    python scripts/slowest.py AFTER.xml --write-durations tests/durations.json

The table is Markdown (docs/development.md holds one). ``--write-durations`` refreshes the
seconds per test that tests/conftest.py orders a parallel run by (longest first); only the
order matters, so any recent full run will do (tests under a second are left out).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def node_id(classname: str, name: str) -> str:
    """pytest's node id of a junit test case ("tests.app.test_x.TestY", "test_z[1]")."""
    name = re.sub(r"@[^\]]*$", "", name)  # xdist's "@group" suffix (--dist loadgroup)
    parts = classname.split(".")
    for cut in range(len(parts), 0, -1):
        path = Path(*parts[:cut]).with_suffix(".py")
        if (ROOT / path).is_file():
            return "::".join([path.as_posix(), *parts[cut:], name])
    return f"{classname.replace('.', '/')}.py::{name}"


def read(junit: Path) -> dict[str, float]:
    """Seconds per node id (setup + call + teardown, as junit counts them)."""
    root = ET.parse(junit).getroot()
    times: dict[str, float] = {}
    for case in root.iter("testcase"):
        nid = node_id(case.get("classname", ""), case.get("name", ""))
        times[nid] = times.get(nid, 0.0) + float(case.get("time") or 0)
    return times


def table(after: dict[str, float], before: dict[str, float] | None, n: int) -> str:
    rows = sorted(after.items(), key=lambda kv: -kv[1])[:n]
    if before is None:
        lines = ["| s | test |", "|---:|---|"]
        lines += [f"| {s:.1f} | `{nid}` |" for nid, s in rows]
    else:
        lines = ["| before s | after s | test |", "|---:|---:|---|"]
        lines += [f"| {before[nid]:.1f} | {s:.1f} | `{nid}` |" if nid in before
                  else f"| – | {s:.1f} | `{nid}` |" for nid, s in rows]
    total = sum(after.values())
    lines.append(f"\n{len(after)} tests, {total:.0f} s of test time in all"
                 + (f" (before: {len(before)} tests, {sum(before.values()):.0f} s)"
                    if before is not None else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("junit", type=Path, help="junit XML of the run")
    ap.add_argument("--before", type=Path, help="junit XML of an earlier run, to compare")
    ap.add_argument("-n", type=int, default=20, help="how many tests (default 20)")
    ap.add_argument("--write-durations", type=Path, metavar="JSON",
                    help="write seconds per test id (tests/durations.json)")
    args = ap.parse_args(argv)
    try:
        after = read(args.junit)
        before = read(args.before) if args.before else None
    except (OSError, ET.ParseError) as ex:
        print(f"slowest: cannot read the junit XML: {ex}", file=sys.stderr)
        return 2
    if args.write_durations:
        # the order of the short ones hardly matters: they get tests/conftest.py's default
        rounded = {k: round(v, 1) for k, v in sorted(after.items()) if v >= 1.0}
        args.write_durations.write_text(json.dumps(rounded, indent=0) + "\n")
    print(table(after, before, args.n))
    return 0


if __name__ == "__main__":
    sys.exit(main())
