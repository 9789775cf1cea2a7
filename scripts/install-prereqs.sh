#!/usr/bin/env bash
# Idempotent host set-up for ha-lab on Debian/Ubuntu: Docker Engine (Debian's docker.io),
# Compose v2 (a static binary taken from the next Debian release, since bookworm lacks it),
# debootstrap (to make the offline base image) and a running dockerd.
# Package sources are derived from this machine's own apt configuration; no mirror is written here.
set -euo pipefail
. "$(dirname "$0")/apt-source.sh"

say() { printf 'halab-setup: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

[ "$(uname -s)" = Linux ] || die "ha-lab needs a Linux host with Docker; install Docker Engine and the Compose v2 plugin yourself, then rerun."
command -v apt-get >/dev/null 2>&1 || die "no apt-get: this installer supports Debian/Ubuntu only. Install Docker Engine, the Compose v2 plugin ('docker compose') and debootstrap, then rerun."
SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null 2>&1 || die "run as root (or install sudo): installing packages needs root."
  SUDO="sudo"
fi

# Fetch the compose plugin only where the docker CLI does not already have it.
PLUGIN_DIR=/usr/local/lib/docker/cli-plugins
COMPOSE_SUITE="${HALAB_COMPOSE_SUITE:-trixie}"

apt_updated=0
apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ "${#missing[@]}" = 0 ] && return 0
  if [ "$apt_updated" = 0 ]; then say "apt-get update"; $SUDO apt-get update -qq; apt_updated=1; fi
  say "installing ${missing[*]}"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_compose() {
  if docker compose version >/dev/null 2>&1; then return 0; fi
  local uri tmp deb
  uri=$(debian_uri | head -n 1 || true)
  [ -n "$uri" ] || die "could not find a Debian archive in /etc/apt/sources.list*: install the Compose v2 plugin ('docker compose') by hand."
  say "fetching Compose v2 (docker-compose from Debian ${COMPOSE_SUITE}) through this machine's apt source"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$tmp/etc/sources.list.d" "$tmp/etc/preferences.d"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri $COMPOSE_SUITE main" > "$tmp/etc/sources.list"
  local opts=(-o "Dir::Etc::SourceList=$tmp/etc/sources.list" -o "Dir::Etc::SourceParts=$tmp/etc/sources.list.d"
              -o "Dir::Etc::Preferences=$tmp/etc/preferences" -o "Dir::Etc::PreferencesParts=$tmp/etc/preferences.d"
              -o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache=$tmp/cache" -o "APT::Get::List-Cleanup=0"
              -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")
  apt-get "${opts[@]}" update -qq
  (cd "$tmp" && apt-get "${opts[@]}" download docker-compose >/dev/null)
  deb=$(ls "$tmp"/docker-compose_*.deb 2>/dev/null | head -n 1)
  [ -n "$deb" ] || die "Debian ${COMPOSE_SUITE} has no docker-compose package on this machine's mirror."
  dpkg-deb -x "$deb" "$tmp/x"
  local bin
  bin=$(find "$tmp/x" -type f -name docker-compose -perm -u+x | head -n 1)
  [ -n "$bin" ] || die "the docker-compose package held no binary."
  $SUDO install -D -m 0755 "$bin" "$PLUGIN_DIR/docker-compose"
  docker compose version >/dev/null 2>&1 || die "installed $PLUGIN_DIR/docker-compose but 'docker compose version' still fails."
}

start_dockerd() {
  if docker info >/dev/null 2>&1; then return 0; fi
  if [ -d /run/systemd/system ]; then
    say "starting docker with systemd"
    $SUDO systemctl start docker
  else
    say "no init system: starting dockerd in the background (log: /var/log/dockerd.log)"
    $SUDO sh -c 'nohup dockerd >/var/log/dockerd.log 2>&1 &'
  fi
  local i
  for i in $(seq 1 60); do
    docker info >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  die "dockerd did not answer within 30 s; see /var/log/dockerd.log"
}

command -v dockerd >/dev/null 2>&1 || apt_install docker.io
apt_install debootstrap iptables ca-certificates
start_dockerd
install_compose
say "ready: $(docker --version); $(docker compose version)"
