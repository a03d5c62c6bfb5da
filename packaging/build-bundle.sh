#!/usr/bin/env bash
# Build the one-folder PyInstaller bundle of traystatus.
#
#   bash packaging/build-bundle.sh [DISTDIR]     (default: dist/)  ->  DISTDIR/traystatus/
#
# Uses .venv (created by scripts/bootstrap.sh) with the `bundle` extra (PyInstaller). Build
# on each target platform: PyInstaller does not cross-compile. Then:
#   DISTDIR/traystatus/traystatus --version
#   DISTDIR/traystatus/traystatus status --dsn "host=... dbname=statbus user=..."
#   DISTDIR/traystatus/traystatus            # the tray app
# Ship it as a tarball (Linux), the traystatus.app folder (macOS, sign and notarize it) or
# a zip / installer (Windows); see docs/install.md.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dist=$(realpath -m "${1:-$root/dist}")
work=$(realpath -m "${TRAYSTATUS_BUNDLE_WORKDIR:-$root/build/pyinstaller}")
python=${PYTHON:-$root/.venv/bin/python}
if [ ! -x "$python" ]; then python=$root/.venv/Scripts/python.exe; fi
if ! "$python" -c "import PyInstaller" 2>/dev/null; then
  echo "build-bundle: installing PyInstaller (the bundle extra)" >&2
  "$python" -m pip install -q "$root[bundle]"
fi
cd "$root"
"$python" -m PyInstaller --noconfirm --clean --log-level WARN \
  --distpath "$dist" --workpath "$work" packaging/pyinstaller/traystatus.spec
exe=$dist/traystatus/traystatus
[ -x "$exe" ] || exe=$dist/traystatus/traystatus.exe
"$exe" --version
echo "build-bundle: $(du -sh "$dist/traystatus" | cut -f1) in $dist/traystatus"
