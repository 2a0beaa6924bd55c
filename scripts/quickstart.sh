#!/usr/bin/env bash
# One command for a fresh Debian 12 machine: install everything, build the extension zip, and
# run the main job — a real packet capture through the handler, driven as the guest agent
# drives it, uploaded to the embedded local blob storage (Azurite). Extra arguments go to the
# demo: --seconds N, --sas-url URL (a real blob SAS URL), --workdir DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
exec .venv/bin/python -m devtools.demo "$@"
