#!/usr/bin/env bash
# Pin every base image ARG of the Dockerfiles (PYTHON_IMAGE, UV_IMAGE, CUDA_*_IMAGE) to the digest its tag names
# today: `python:3.11.13-slim-bookworm` -> `python:3.11.13-slim-bookworm@sha256:…` (the tag stays, for people).
# Needs a Docker with Buildx that can reach the registries; run it, review the diff, commit, and re-run it to
# take a base image's security fixes. --check only lists the bases that are not pinned by digest (exit 1 if any).
# Usage: scripts/pin-base-images.sh [--check]
set -euo pipefail
cd "$(dirname "$0")/.."
check=false
[ "${1:-}" = "--check" ] && check=true
unpinned=0
for dockerfile in Dockerfile Dockerfile.pipeline; do
  while IFS= read -r line; do
    name=${line%%=*}
    name=${name#ARG }
    image=${line#*=}
    image=${image%%@*}
    if [ "$line" != "${line%@sha256:*}" ]; then
      continue
    fi
    unpinned=$((unpinned + 1))
    if $check; then
      echo "$dockerfile: $name=$image is not pinned by digest"
      continue
    fi
    # The digest of what the tag names: the multi-platform index where there is one.
    digest=$(docker buildx imagetools inspect "$image" --format '{{.Manifest.Digest}}')
    [[ $digest =~ ^sha256:[0-9a-f]{64}$ ]] || { echo "error: no digest for $image (got: $digest)" >&2; exit 1; }
    sed -i "s|^ARG $name=$image\$|ARG $name=$image@$digest|" "$dockerfile"
    echo "$dockerfile: $name=$image@$digest"
  done < <(grep -E '^ARG [A-Z_]+_IMAGE=' "$dockerfile")
done
if $check && [ "$unpinned" -gt 0 ]; then
  exit 1
fi
