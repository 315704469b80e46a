#!/usr/bin/env bash
# Google Cloud's apt repository on a CI runner (as root), so that `make system-deps` finds kubectl and the Pub/Sub
# emulator there as it does here: without them their tests would fail under CI rather than skip.
set -euo pipefail
keyring=/usr/share/keyrings/cloud.google.gpg
curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg | gpg --dearmor --yes -o "$keyring"
echo "deb [signed-by=$keyring] https://packages.cloud.google.com/apt cloud-sdk main" \
  >/etc/apt/sources.list.d/google-cloud-sdk.list
