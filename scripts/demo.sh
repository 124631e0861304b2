#!/usr/bin/env bash
# The whole job so far, end to end, on embedded defaults and with no input:
# file keys, a 2-of-3 root key ceremony, and the repository's status.
# Usage: scripts/demo.sh COLDHARBOR_BINARY DEMO_DIR
set -euo pipefail
ch=$1
demo=$2

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

rm -rf "$demo"
mkdir -p "$demo/keys"
cd "$demo"

# Demo keys are encrypted with a known password. Real ceremonies use
# YubiKeys, or a password typed at the prompt (never on the command line).
export COLDHARBOR_PASSWORD=coldharbor-demo

step "1. Keys: three root holders, one targets key, the online snapshot and timestamp keys"
for k in root1 root2 root3 targets snapshot timestamp; do
  run "$ch" keys generate "file:keys/$k.key" >/dev/null
done
echo "(each key is in cosign's encrypted format: cosign sign --key keys/targets.key works with it)"

step "2. Root key ceremony: 2-of-3 root; the third holder is elsewhere and gave only a public key"
run "$ch" ceremony init --repo repo \
  --root-key file:keys/root1.key --root-key file:keys/root2.key --root-key keys/root3.key.pub \
  --root-threshold 2 \
  --targets-key file:keys/targets.key \
  --snapshot-key file:keys/snapshot.key --timestamp-key file:keys/timestamp.key

step "3. Status: every role verified from the pinned root, with its expiry"
run "$ch" status --repo repo

step "4. Tamper check: a forged timestamp is refused (exit 3)"
cp -r repo tampered
sed -i '0,/"version": 1/s//"version": 2/' tampered/metadata/timestamp.json
set +e
"$ch" status --repo tampered >/dev/null
code=$?
set -e
echo "status on the tampered copy exited $code"
if [ "$code" != 3 ]; then
  echo "demo: expected exit 3 for a tampered repository" >&2
  exit 1
fi

step "Done"
cat <<TXT
Keys:        $demo/keys
Repository:  $demo/repo        (serve metadata/ and targets/ with any web server)
Transcript:  $demo/repo/transcript.jsonl
TXT
