#!/usr/bin/env bash
# The release workflow's promotion: one commit of an overlay's release file naming the new image tag (the model
# version stays as released; `reco gitops promote --env ENV --image TAG`).
#   staging: committed on the checked-out branch (main) and pushed; Argo CD syncs it and the canary starts.
#   prod:    committed on a new branch release/prod-… and pushed, then a pull request is opened; it merges only
#            with the approvals branch protection asks for (CODEOWNERS of gitops/overlays/prod/).
# Usage: scripts/ci/release-commit.sh ENV TAG   (needs GH_TOKEN for the pull request of prod)
set -euo pipefail
cd "$(dirname "$0")/../.."
env=${1:?usage: release-commit.sh ENV TAG}
tag=${2:?usage: release-commit.sh ENV TAG}
reco=${RECO:-.venv/bin/reco}

git config user.name "reco release (GitHub Actions)"
git config user.email "reco-release@users.noreply.github.com"
"$reco" gitops promote --env "$env" --image "$tag" --push \
  --reason "release workflow run ${GITHUB_RUN_ID:-local} of ${GITHUB_SHA:-$(git rev-parse HEAD)}"

if [ "$env" = "prod" ]; then
  branch=$(git for-each-ref --sort=-committerdate --count=1 --format='%(refname:short)' 'refs/heads/release/prod-*')
  gh pr create --base "$(git rev-parse --abbrev-ref HEAD)" --head "$branch" \
    --title "release(prod): image $tag" \
    --body "Promotes image \`$tag\` (built, scanned and released to staging by run ${GITHUB_RUN_ID:-?}) to prod. Merging it is the release: Argo CD syncs prod and the canary runs."
fi
