#!/usr/bin/env bash
# Runs the commands of README.md's "Using coldharbor with Harbor", as
# written, against the Harbor kit (../shared/harbor): a source registry
# (internal/demoenv), keys, a ceremony, export and sign make the bundle the
# section imports; then every ```sh block of the section runs in order, with
# HARBOR_URL set to the kit's URL. Prints each block's output.
# Usage: scripts/harbor-readme.sh COLDHARBOR DEMOENV CRANE COSIGN [HARBOR_TAG]
set -euo pipefail
ch=$(realpath "$1") demoenv=$(realpath "$2") crane=$(realpath "$3") cosign=$(realpath "$4")
tag=${5:-v2.14.4}
root=$(cd "$(dirname "$0")/.." && pwd)
kit=${COLDHARBOR_HARBOR_KIT:-$root/../shared/harbor}
work=$(mktemp -d) && chmod 755 "$work"
bin=$work/bin && mkdir -p "$bin" && ln -s "$ch" "$bin/coldharbor" && ln -s "$crane" "$bin/crane" && ln -s "$cosign" "$bin/cosign"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export HARBOR_TAG=$tag STATE_DIR=$work/harbor HARBOR_PORT=$(free_port) PG_PORT=$(free_port) REDIS_PORT=$(free_port) REG_PORT=$(free_port)
cleanup() {
  "$kit/harbor.sh" stop >/dev/null 2>&1 || true
  [ -n "${denv:-}" ] && kill "$denv" 2>/dev/null && wait "$denv" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

cd "$work"
"$demoenv" -dir "$work/env" > "$work/demoenv.out" 2>&1 & denv=$!
for _ in $(seq 300); do [ -f env/env.sh ] && break; sleep 0.1; done
. env/env.sh
"$kit/harbor.sh" start > harbor.out 2>&1 || { cat harbor.out; exit 1; }
kit_url=http://127.0.0.1:$HARBOR_PORT

# The bundle the section imports, made as the pipeline section makes it.
export COLDHARBOR_PASSWORD=readme XDG_CACHE_HOME=$work/cache PATH=$bin:$PATH
mkdir -p keys
for k in root targets snapshot timestamp; do coldharbor keys generate "file:keys/$k.key" >/dev/null; done
coldharbor ceremony init --repo signer --root-key file:keys/root.key --targets-key file:keys/targets.key \
  --snapshot-key keys/snapshot.key.pub --timestamp-key keys/timestamp.key.pub >/dev/null
cp -r signer isolated && cp -r signer exporter
coldharbor export --repo exporter --dest "127.0.0.1:$HARBOR_PORT/mirror" -o bundle.tar \
  "$SOURCE_REGISTRY/demo/app-one:1.0=app/one:1" "$SOURCE_REGISTRY/demo/multiarch:1.0=app/multi:1" >/dev/null
coldharbor sign bundle.tar --repo signer --key file:keys/targets.key -o approval.tar --yes >/dev/null
export TUF_REPO=$work/isolated SNAPSHOT_KEY=file:$work/keys/snapshot.key TIMESTAMP_KEY=file:$work/keys/timestamp.key
# cosign looks up Sigstore's public TUF repository even with --key: keep it offline.
export TUF_ROOT=$work/sigstore-tuf HTTPS_PROXY=http://127.0.0.1:9 NO_PROXY=127.0.0.1,localhost

# The section's blocks, in order, as one script.
awk '/^## Using coldharbor with Harbor/{on=1; next} on && /^## /{exit} on && /^```sh$/{code=1; print "echo \"--- block " ++n " ---\""; next} code && /^```$/{code=0; next} code' \
  "$root/README.md" | sed "s|^HARBOR_URL=https://harbor.internal |HARBOR_URL=$kit_url |" > section.sh
bash -euo pipefail section.sh
echo "--- all blocks ran"
