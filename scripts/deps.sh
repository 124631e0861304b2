#!/usr/bin/env bash
# Installs the Debian packages coldharbor's build and tests need, only those
# that are missing (so it is a no-op on a ready machine), and checks Go.
set -euo pipefail

packages=(
  ca-certificates # module downloads over TLS
  git             # version stamping, go install
  gcc libc6-dev   # cgo (piv-go needs it)
  pkg-config
  docker-registry # the CNCF distribution registry the end-to-end tests and the demo run on loopback
  libpcsclite-dev # piv-go (YubiKeys) links libpcsclite
  pcscd vsmartcard-vpcd # PC/SC with a virtual reader: hsm/pivsim plugs a software YubiKey into it
  yubico-piv-tool # a second opinion on the software YubiKey in the tests
  softhsm2        # a PKCS#11 token for the online-key tests
  skopeo          # a second real client pulling through the serve gate
  # the Harbor kit (../shared/harbor) runs Harbor's core on these in the Harbor tests
  postgresql redis-server openssl curl python3 xz-utils
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
  # Debian's docker-registry enables a service on :5000 (all interfaces);
  # we only ever run it ourselves, on loopback.
  # So do PostgreSQL and Redis: the Harbor kit runs private instances only.
  for svc in docker-registry postgresql redis-server; do
    if printf '%s\n' "${missing[@]}" | grep -qx "$svc"; then
      $sudo systemctl disable --now "$svc" >/dev/null 2>&1 || $sudo service "$svc" stop >/dev/null 2>&1 || true
    fi
  done
fi

if ! command -v go >/dev/null; then
  echo "deps: Go 1.26 or newer is needed (https://go.dev/dl; Debian's golang package is too old)" >&2
  exit 1
fi
have=$(go env GOVERSION | sed 's/^go//')
if [ "$(printf '%s\n1.26\n' "$have" | sort -V | head -1)" != "1.26" ]; then
  echo "deps: Go $have is too old: 1.26 or newer is needed" >&2
  exit 1
fi
