"""``python -m traystatus.demo``: the demo without the ``traystatus`` front end."""

from __future__ import annotations

import sys

from traystatus.demo.cli import build_parser, main

sys.exit(main(build_parser().parse_args()))
