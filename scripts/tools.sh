#!/usr/bin/env bash
# The linters for infrastructure and workflows, installed into the checkout (nothing system-wide but shellcheck):
# actionlint and tflint built with `go install` into .tools/bin, checkov and check-jsonschema from
# requirements-tools.lock into .venv-tools, shellcheck (actionlint runs it on every `run:` block) from Debian.
# terraform itself must be on PATH (its registry is not needed: only `terraform fmt` runs here).
# Idempotent: what is there at the pinned version is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${ACTIONLINT_VERSION:?}" "${TFLINT_VERSION:?}" "${PYTHON:=python3.11}" "${UV:?}"
bin="$PWD/.tools/bin"
mkdir -p "$bin"

go_tool() { # name, module path, version
  local name=$1 module=$2 version=$3 stamp="$bin/.$1-$3"
  [ -x "$bin/$name" ] && [ -f "$stamp" ] && return 0
  command -v go >/dev/null || { echo "go is needed to build $name: install Go 1.22+ (https://go.dev/dl)"; exit 1; }
  echo "[tools] $name $version (go install)"
  GOBIN="$bin" timeout 900 go install "$module@$version"
  rm -f "$bin/.$name-"* && touch "$stamp"
}
go_tool actionlint github.com/rhysd/actionlint/cmd/actionlint "$ACTIONLINT_VERSION"
go_tool tflint github.com/terraform-linters/tflint "$TFLINT_VERSION"

if ! command -v shellcheck >/dev/null; then
  if [ "$(id -u)" -ne 0 ]; then echo "shellcheck is missing and installing it needs root: sudo apt-get install shellcheck"; exit 1; fi
  echo "[tools] shellcheck (Debian)"
  timeout 300 apt-get update -qq
  DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq shellcheck >/dev/null
fi

if [ ! -f .venv-tools/.installed ] || [ requirements-tools.lock -nt .venv-tools/.installed ]; then
  echo "[tools] .venv-tools from requirements-tools.lock (checkov, check-jsonschema)"
  "$PYTHON" -m venv .venv-tools
  "$UV" pip install --python .venv-tools/bin/python -q -r requirements-tools.lock
  touch .venv-tools/.installed
fi
command -v terraform >/dev/null || { echo "terraform is needed for 'terraform fmt': https://developer.hashicorp.com/terraform/install"; exit 1; }
