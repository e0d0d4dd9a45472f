#!/usr/bin/env bash
# Wire and JSON compatibility of proto/ with an earlier commit (buf.yaml's
# WIRE_JSON rules), from the local clone only: no network, no registry.
#
#   npm run check:breaking                        # against HEAD~1
#   BREAKING_AGAINST=origin/main npm run check:breaking
#
# buf's own git input (.git#ref=…,subdir=proto) cannot be used: the protos
# import buf/validate, whose module (proto-deps/) is git-ignored and derived
# at install, so the old commit alone does not compile. The old proto/ is
# therefore exported next to the current proto-deps/ and buf.yaml, and
# checked as a directory workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

against="${BREAKING_AGAINST:-HEAD~1}"

has_commit() { git rev-parse --verify --quiet "$1^{commit}" >/dev/null; }

# A shallow clone (CI's depth 1) may lack the commit: deepen it once, quietly.
if ! has_commit "$against" && [ "$(git rev-parse --is-shallow-repository)" = "true" ]; then
  git fetch --quiet --deepen=1 2>/dev/null || true
fi
if ! has_commit "$against"; then
  echo "check:breaking: skipped: ${against} is not in this clone (a single-commit clone has nothing to compare with)"
  exit 0
fi
if [ -z "$(git ls-tree -d "$against" proto)" ]; then
  echo "check:breaking: skipped: ${against} has no proto/ directory"
  exit 0
fi
if [ ! -d proto-deps ]; then
  echo "check:breaking: proto-deps/ is missing: run npm ci (or npm run postinstall) first" >&2
  exit 1
fi

old="$(mktemp -d)"
trap 'rm -rf "$old"' EXIT
git archive "$against" proto | tar -x -C "$old"
cp -R proto-deps buf.yaml "$old/"

echo "check:breaking: proto/ against $(git rev-parse --short "$against") (${against})"
buf breaking --against "$old"
echo "check:breaking: no breaking change"
