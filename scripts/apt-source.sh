# Sourced by the set-up scripts: the machine's own Debian archive URI, read from its apt
# configuration (deb822 .sources or one-line .list), so no mirror host is ever written down.
debian_uri() {
  {
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
      [ -f "$f" ] && awk '/^URIs:/{for(i=2;i<=NF;i++) if ($i ~ /\/debian\/?$/) print $i}' "$f"
    done
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
      | awk '$1=="deb" {for(i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\// && $i ~ /\/debian\/?$/) print $i}'
  } | head -n 1 || true
}
