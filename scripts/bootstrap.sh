#!/usr/bin/env bash
# Set up a machine for traystatus: the Debian packages the desktop side and the tests need
# (installed only when missing, only when we may), and a virtualenv in .venv with
# traystatus and its test extra. Idempotent; sourced by scripts/test and scripts/demo.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"

# X server, tray host, session bus, notification server, screenshots, clicks, and the X
# client libraries Qt's xcb plugin loads (libxcb-icccm4, libxcb-keysyms1...).
apt_packages=(
  xvfb xauth trayer dunst dbus-x11 dbus xdotool x11-utils imagemagick libnotify-bin
  libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 libxcb-image0 libxcb-render-util0
  libxcb-shape0 libxcb-xinerama0 libxcb-randr0 libxcb-xkb1 libxcb-xfixes0 libxkbcommon-x11-0
  libegl1 libgl1 libfontconfig1 libdbus-1-3 fonts-dejavu-core
  desktop-file-utils appstream
)
if [ -f .ci/apt-packages.txt ]; then
  while read -r p; do [ -n "$p" ] && [ "${p#\#}" = "$p" ] && apt_packages+=("$p"); done < .ci/apt-packages.txt
fi
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "bootstrap: installing Debian packages: ${missing[*]}" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "bootstrap: missing Debian packages (install them as root): ${missing[*]}" >&2
  fi
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
stamp=.venv/.traystatus-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -m pip install -q -e '.[test,bundle]' 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import traystatus, PySide6, psycopg, qasync, pytestqt, xdist" && touch "$stamp"
fi
