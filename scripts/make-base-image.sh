#!/usr/bin/env bash
# Creates the image debian:bookworm-slim offline when it is absent and cannot be pulled:
# debootstrap a minbase bookworm from this machine's own apt source, then `docker import` it.
set -euo pipefail
. "$(dirname "$0")/apt-source.sh"
TAG="${1:-debian:bookworm-slim}"
say() { printf 'halab-base: %s\n' "$*" >&2; }
if docker image inspect "$TAG" >/dev/null 2>&1; then exit 0; fi
if timeout 20 docker pull -q "$TAG" >/dev/null 2>&1; then say "pulled $TAG"; exit 0; fi
uri=$(debian_uri)
[ -n "$uri" ] || { say "error: no Debian archive in /etc/apt/sources.list*; cannot make $TAG"; exit 1; }
command -v debootstrap >/dev/null 2>&1 || { say "error: debootstrap is missing (run scripts/install-prereqs.sh)"; exit 1; }
root=$(mktemp -d /var/tmp/halab-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT
say "building $TAG with debootstrap (about 30 s)"
debootstrap --variant=minbase bookworm "$root" "$uri" >"$root.log" 2>&1 \
  || { say "error: debootstrap failed, see $root.log"; exit 1; }
rm -f "$root.log"
# Keep the image small and point it at the same mirror the host uses.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | docker import \
  -c 'CMD ["bash"]' -c 'ENV LANG=C.UTF-8' -m "ha-lab offline base (debootstrap minbase bookworm)" - "$TAG" >/dev/null
say "created $TAG"
