#!/usr/bin/env bash
# The whole job end to end, on embedded defaults and with no input:
# two registries on loopback (TLS, auth), file keys, a 2-of-3 root key
# ceremony, export -> sign -> import -> list -> verify, and two refusals.
# Usage: scripts/demo.sh COLDHARBOR DEMOENV DEMO_DIR [COSIGN]
set -euo pipefail
ch=$1
demoenv=$2
demo=$3
cosign=${4:-}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

rm -rf "$demo"
mkdir -p "$demo/keys" "$demo/env"
cd "$demo"

step "0. Two registries on loopback: a source holding three demo images, an empty target"
"$demoenv" -dir "$demo/env" > "$demo/env/demoenv.out" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  [ -f "$demo/env/env.sh" ] && break
  if ! kill -0 $pid 2>/dev/null; then
    cat "$demo/env/demoenv.out" >&2
    echo "demo: the registries did not start" >&2
    exit 1
  fi
  sleep 0.1
done
[ -f "$demo/env/env.sh" ] || { echo "demo: the registries did not start in 30 s" >&2; exit 1; }
# shellcheck disable=SC1091
. "$demo/env/env.sh"
cat "$demo/env/demoenv.out"

# Demo keys are encrypted with a known password. Real ceremonies use
# YubiKeys, or a password typed at the prompt (never on the command line).
export COLDHARBOR_PASSWORD=coldharbor-demo
export XDG_CACHE_HOME="$demo/cache"

step "1. Keys: three root holders, one targets key, the online snapshot and timestamp keys"
for k in root1 root2 root3 targets snapshot timestamp; do
  run "$ch" keys generate "file:keys/$k.key" >/dev/null
done
echo "(each key is in cosign's encrypted format: cosign sign --key keys/targets.key works with it)"

step "2. Root key ceremony (air-gapped): 2-of-3 root; the third holder and the isolated side's online keys are elsewhere and gave public keys"
run "$ch" ceremony init --repo signer \
  --root-key file:keys/root1.key --root-key file:keys/root2.key --root-key keys/root3.key.pub \
  --root-threshold 2 \
  --targets-key file:keys/targets.key \
  --snapshot-key keys/snapshot.key.pub --timestamp-key keys/timestamp.key.pub
run "$ch" ceremony verify --repo signer
# The repository is carried to the isolated side; the connected side keeps
# a copy of what is published there.
cp -r signer isolated
cp -r signer exporter

step "3. Export (connected side): three images, one multi-arch, two sharing a base layer"
run "$ch" export --repo exporter --dest "$TARGET_REGISTRY/mirror" -o bundle.tar \
  "$SOURCE_REGISTRY/demo/multiarch:1.0" "$SOURCE_REGISTRY/demo/app-one:1.0" "$SOURCE_REGISTRY/demo/app-two:1.0"

step "4. Sign (air-gapped): reads only the bundle's head, shows the change, signs with the targets key"
run "$ch" sign bundle.tar --repo signer --key file:keys/targets.key -o approval.tar --yes

step "5. Import (isolated side): verify, push images and cosign signatures, publish TUF"
run "$ch" import bundle.tar approval.tar --repo isolated --registry "$TARGET_REGISTRY/mirror" \
  --snapshot-key file:keys/snapshot.key --timestamp-key file:keys/timestamp.key

step "6. List and verify, as a client in the isolated network would"
run "$ch" list --repo isolated
run "$ch" verify --repo isolated --registry "$TARGET_REGISTRY/mirror" \
  "$TARGET_REGISTRY/mirror/demo/multiarch:1.0" "$TARGET_REGISTRY/mirror/demo/app-one:1.0" "$TARGET_REGISTRY/mirror/demo/app-two:1.0"
run "$ch" status --repo isolated

if [ -n "$cosign" ] && [ -x "$cosign" ]; then
  step "7. The real cosign verifies the images with the published cosign.pub (no transparency log)"
  pub=$(ls isolated/targets/*.cosign.pub)
  # cosign looks up Sigstore's public TUF repository even offline; point it
  # at a closed loopback port so it fails at once, as it would in an isolated network.
  for img in demo/multiarch:1.0 demo/app-one:1.0 demo/app-two:1.0; do
    TUF_ROOT="$demo/cosign-tuf" HTTPS_PROXY=http://127.0.0.1:9 NO_PROXY=127.0.0.1,localhost \
      "$cosign" verify --key "$pub" --insecure-ignore-tlog=true "$TARGET_REGISTRY/mirror/$img" >/dev/null 2>&1
    echo "$ cosign verify --key $pub --insecure-ignore-tlog=true $TARGET_REGISTRY/mirror/$img: Verified OK"
  done
else
  step "7. (cosign not built: 'make tools' builds the pinned cosign, and 'make demo' then uses it)"
fi

step "8. Running the same import again is safe: it checks the registry and publishes nothing"
run "$ch" import bundle.tar approval.tar --repo isolated --registry "$TARGET_REGISTRY/mirror" \
  --snapshot-key file:keys/snapshot.key --timestamp-key file:keys/timestamp.key

step "9. Refusals: a bundle with one altered byte in a layer, and an old approval replayed after a newer one (both exit 3)"
set +e
"$ch" export --repo exporter --dest "$TARGET_REGISTRY/mirror" -o bundle2.tar "$SOURCE_REGISTRY/demo/app-two:1.0=demo/app-three:1.0" >/dev/null
"$ch" sign bundle2.tar --repo signer --key file:keys/targets.key -o approval2.tar --yes >/dev/null
cp bundle2.tar bundle2-altered.tar
size=$(stat -c %s bundle2-altered.tar)
printf '\x00' | dd of=bundle2-altered.tar bs=1 seek=$((size - 2048 - 100)) conv=notrunc 2>/dev/null
"$ch" import bundle2-altered.tar approval2.tar --repo isolated --registry "$TARGET_REGISTRY/mirror" \
  --snapshot-key file:keys/snapshot.key --timestamp-key file:keys/timestamp.key
code1=$?
# The intact bundle imports (targets v3); the first approval (targets v2) is then a rollback.
"$ch" import bundle2.tar approval2.tar --repo isolated --registry "$TARGET_REGISTRY/mirror" \
  --snapshot-key file:keys/snapshot.key --timestamp-key file:keys/timestamp.key >/dev/null
code0=$?
"$ch" import bundle.tar approval.tar --repo isolated --registry "$TARGET_REGISTRY/mirror" \
  --snapshot-key file:keys/snapshot.key --timestamp-key file:keys/timestamp.key
code2=$?
set -e
echo "altered layer: exit $code1; intact bundle: exit $code0; old approval replayed: exit $code2"
if [ "$code1" != 3 ] || [ "$code0" != 0 ] || [ "$code2" != 3 ]; then
  echo "demo: expected exit 3, 0, 3" >&2
  exit 1
fi

step "Done"
cat <<TXT
Keys:                 $demo/keys
Signer's repository:  $demo/signer
Published repository: $demo/isolated      (serve metadata/ and targets/ with any web server)
Bundle and approval:  $demo/bundle.tar $demo/approval.tar
Images:               $TARGET_REGISTRY/mirror/demo/... (the registries stop when the demo ends)
TXT
