#!/usr/bin/env bash
# The main job on the embedded default, from a fresh clone: install, Redis up, a worker,
# the sample catalogue indexed through the queue, example searches.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/redis-up.sh
export HF_HUB_OFFLINE=1
export HYBRID_SEARCH_STORE_PATH=${HYBRID_SEARCH_STORE_PATH:-$PWD/.hybrid-search/demo.sqlite}
export HYBRID_SEARCH_QUEUE=${HYBRID_SEARCH_QUEUE:-demo-catalogue-updates}
CLI=.venv/bin/hybrid-search
mkdir -p .hybrid-search
$CLI sample-catalogue .hybrid-search/sample >/dev/null
$CLI worker --loglevel warning > .hybrid-search/worker.log 2>&1 &
WORKER=$!
trap 'kill $WORKER 2>/dev/null; wait $WORKER 2>/dev/null || true' EXIT
$CLI index .hybrid-search/sample/catalogue.jsonl
export COLUMNS=${COLUMNS:-150}
$CLI search "red t-shirt" --size 5
$CLI search "women kurta" --filter price\<60 --fusion linear --size 5
$CLI search --image .hybrid-search/sample/images/S010.png --size 5
$CLI status
