#!/usr/bin/env bash
# What git holds under gitops/ is what the code renders, and it renders:
#   1. gitops/workflows/ equals a fresh `python -m workflows render` (byte for byte), and passes `workflows check`;
#   2. every release file is as `reco gitops promote` writes it (the one-file diff a release makes);
#   3. every kustomization (overlays, platform, apps, workflows) builds with `kubectl kustomize`.
# Usage: scripts/render-check.sh [PYTHON]   (default .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/.."
python=${1:-.venv/bin/python}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

"$python" -m workflows render --out "$out/workflows" >/dev/null
if ! diff -ru gitops/workflows "$out/workflows"; then
  echo "error: gitops/workflows/ differs from what workflows/ renders: run \`reco workflows render\` and commit" >&2
  exit 1
fi
"$python" -m workflows check gitops/workflows

"$python" - <<'PY'
import sys
from pathlib import Path

from reco.gitops import read_release, write_release

stale = []
for path in sorted(Path("gitops/overlays").glob("*/release.yaml")):
    text = path.read_text()
    if write_release(text, read_release(text)) != text:
        stale.append(str(path))
if stale:
    sys.exit(f"error: not as `reco gitops promote` writes it (quoted values, nothing else changed): {', '.join(stale)}")
print(f"release files: ok ({len(list(Path('gitops/overlays').glob('*/release.yaml')))})")
PY

if ! command -v kubectl >/dev/null; then
  echo "error: kubectl (its built-in kustomize) is needed to render gitops/; make setup installs it as root" >&2
  exit 1
fi
find gitops -name kustomization.yaml -not -path '*/components/*' -printf '%h\n' | sort | while read -r dir; do
  kubectl kustomize "$dir" >"$out/rendered.yaml" || { echo "error: kubectl kustomize $dir failed" >&2; exit 1; }
  echo "$dir: renders ($(grep -c '^kind:' "$out/rendered.yaml") objects)"
done
