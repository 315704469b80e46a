#!/usr/bin/env bash
# Copy an image from the staging registry to the prod one under the same tag: prod runs the bytes that were
# scanned and ran in staging, never a rebuild. Artifact Registry's tags are immutable here (infra/), so the source
# tag names exactly one digest; the copy keeps that digest (printed by the inspect).
# Usage: scripts/ci/copy-image.sh SOURCE_REPO/NAME:TAG TARGET_REPO/NAME:TAG
set -euo pipefail
source_ref=${1:?usage: copy-image.sh SOURCE:TAG TARGET:TAG}
target_ref=${2:?usage: copy-image.sh SOURCE:TAG TARGET:TAG}
docker buildx imagetools create --tag "$target_ref" "$source_ref"
docker buildx imagetools inspect "$target_ref"
