#!/usr/bin/env bash
# Push an image that was built, SBOM'd and scanned on this runner (the very bytes scanned, not a rebuild) and
# write its digest to the step's outputs.
# Usage: scripts/ci/push-image.sh REGISTRY/REPOSITORY/NAME:TAG
set -euo pipefail
ref=${1:?usage: push-image.sh IMAGE:TAG}
docker push --quiet "$ref"
digest=$(docker image inspect --format '{{index .RepoDigests 0}}' "$ref")
echo "pushed $digest"
if [ -n "${GITHUB_OUTPUT:-}" ]; then
  echo "digest=${digest#*@}" >>"$GITHUB_OUTPUT"
fi
