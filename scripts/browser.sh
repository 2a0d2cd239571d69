#!/usr/bin/env bash
# Install Debian's `chromium` (if missing) for the dashboard's browser test, then print the binary's path.
# Idempotent and quiet: when chromium is already installed the only output is its path; apt's output is kept in a
# temporary log and shown only if the install fails.
set -euo pipefail
APT_TIMEOUT="${APT_TIMEOUT:-900}"

find_chromium() {
  command -v chromium 2>/dev/null || command -v chromium-browser 2>/dev/null || true
}

binary=$(find_chromium)
if [ -z "$binary" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "chromium is not installed, and installing it needs root: run this script as root, or" \
      "'sudo apt-get update && sudo apt-get install -y chromium', then run it again" >&2
    exit 1
  fi
  log=$(mktemp -t browser-install.XXXXXX.log)
  echo "installing Debian's chromium with apt-get (log: $log)" >&2
  if ! { DEBIAN_FRONTEND=noninteractive timeout "$APT_TIMEOUT" apt-get update \
    && DEBIAN_FRONTEND=noninteractive timeout "$APT_TIMEOUT" apt-get install -y --no-install-recommends chromium; } \
    >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "apt-get could not install chromium (full log: $log); check the apt sources and the network" >&2
    exit 1
  fi
  rm -f "$log"
  binary=$(find_chromium)
  if [ -z "$binary" ]; then
    echo "apt-get installed chromium but no 'chromium' binary is on PATH; see 'dpkg -L chromium'" >&2
    exit 1
  fi
fi
echo "$binary"
