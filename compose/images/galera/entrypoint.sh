#!/bin/sh
# A Galera member of the lab (lab/cluster/galera.py renders its settings; docs/galera.md).
#   entrypoint.sh [MARIADBD ARGS...]  start: bootstrap a new primary component only when the file
#                                     $HALAB_GALERA_BOOTSTRAP_FILE names this member, join otherwise
#   entrypoint.sh grastate            print grastate.dat, nothing when there is none (the lab reads
#                                     every member's after a full stop)
#   entrypoint.sh recover             print the position `mariadbd --wsrep-recover` finds (seqno -1)
#   entrypoint.sh seed                at image build: the data directory every member starts from
# The lab, not this script, chooses the member to bootstrap (lab/cluster/grastate.py) and empties
# the file once that member is primary, so that a member restarted later joins instead of starting
# a second cluster.
set -eu
datadir=/var/lib/mysql

seed() {
  # A new data directory bootstrapped once and shut down cleanly, so that grastate.dat holds a
  # cluster uuid and seqno. It carries the harness's admin (the OS user mysql over the socket:
  # labsql, mariabackup's state transfer), which a member needs before it has caught up.
  mariadb-install-db --datadir="$datadir" --skip-test-db --auth-root-authentication-method=socket >/dev/null
  init=/tmp/seed.sql log=/tmp/seed.log
  cat >"$init" <<SQL
CREATE USER IF NOT EXISTS 'mysql'@'localhost' IDENTIFIED VIA unix_socket;
GRANT ALL PRIVILEGES ON *.* TO 'mysql'@'localhost' WITH GRANT OPTION;
SQL
  mariadbd --datadir="$datadir" --skip-networking --init-file="$init" --log-error="$log" --binlog-format=ROW \
    --wsrep-on=ON --wsrep-provider=/usr/lib/galera/libgalera_smm.so --wsrep-cluster-address=gcomm:// --wsrep-new-cluster &
  pid=$!
  i=0
  until grep -q "ready for connections" "$log" 2>/dev/null; do
    i=$((i + 1)); { [ "$i" -lt 300 ] && kill -0 "$pid"; } || { cat "$log" >&2; exit 1; }
    sleep 0.2
  done
  kill -TERM "$pid" && wait "$pid"  # a clean shutdown writes the seqno
  grep -q '^seqno: *[0-9]' "$datadir/grastate.dat" || { cat "$datadir/grastate.dat" "$log" >&2; exit 1; }
  # Never marked safe: a fresh member must not outrank members with history when the lab chooses
  # whom to bootstrap (lab/cluster/grastate.py). galera.cache is rebuilt at start.
  sed -i 's/^safe_to_bootstrap: 1/safe_to_bootstrap: 0/' "$datadir/grastate.dat"
  rm -f "$datadir/galera.cache" "$init" "$log"
}

secret() {  # secret NAME: value of $NAME, else the content of the file $NAME_FILE
  eval "v=\${$1:-}"; eval "f=\${$1_FILE:-}"
  if [ -z "$v" ] && [ -n "$f" ]; then v=$(cat "$f"); fi
  printf '%s' "$v"
}
sql_quote() { printf '%s' "$1" | sed "s/\\\\/\\\\\\\\/g; s/'/\\\\'/g"; }

users() {
  # The lab's database and user, as SQL. The lab runs it through a client session on the
  # bootstrapped member once it is primary, so that Galera replicates it to every member (an
  # --init-file runs outside replication: joiners catching up incrementally never saw it).
  pw=$(sql_quote "$(secret MYSQL_PASSWORD)")
  [ -n "$pw" ] || { echo "halab-galera: MYSQL_PASSWORD or MYSQL_PASSWORD_FILE is required" >&2; exit 1; }
  db=${MYSQL_DATABASE:-cattle} user=${MYSQL_USER:-cattle}
  cat <<SQL
CREATE DATABASE IF NOT EXISTS \`$db\` CHARACTER SET utf8mb4;
CREATE USER IF NOT EXISTS '$user'@'%' IDENTIFIED BY '$pw';
ALTER USER '$user'@'%' IDENTIFIED BY '$pw';
GRANT ALL PRIVILEGES ON \`$db\`.* TO '$user'@'%';
SQL
}

case "${1:-}" in
  seed) seed; exit 0 ;;
  users) users; exit 0 ;;
esac
name=${HALAB_GALERA_NAME:?}
wsrep() {
  printf '%s\n' --wsrep-on=ON --wsrep-provider=/usr/lib/galera/libgalera_smm.so \
    "--wsrep-cluster-name=${HALAB_GALERA_CLUSTER:?}" "--wsrep-cluster-address=${HALAB_GALERA_PEERS:?}" \
    "--wsrep-node-name=$name" "--wsrep-node-address=${HALAB_GALERA_ADDRESS:?}" \
    --wsrep-sst-method=mariabackup --wsrep-sst-auth=mysql: --binlog-format=ROW --default-storage-engine=InnoDB \
    --innodb-autoinc-lock-mode=2
}
# Settings the SST script must not see among mariadbd's arguments (it passes them on to
# mariadb-backup, which refuses --innodb-buffer-pool-size) go into a defaults file it reads.
cnf=/run/mysqld/halab.cnf
printf '[mysqld]\ninnodb_buffer_pool_size=%s\n' "${HALAB_INNODB_BUFFER_POOL_SIZE:-128M}" >"$cnf"
case "${1:-}" in
  grastate) [ ! -f "$datadir/grastate.dat" ] || exec cat "$datadir/grastate.dat"; exit 0 ;;
  recover)
    # Logs "WSREP: Recovered position: <uuid>:<seqno>" and exits; the lab parses it from stdout.
    # shellcheck disable=SC2046
    exec mariadbd --defaults-extra-file="$cnf" --datadir="$datadir" $(wsrep) --wsrep-recover --log-error=/dev/stderr 2>&1 ;;
esac

chosen=$(cat "${HALAB_GALERA_BOOTSTRAP_FILE:-/dev/null}" 2>/dev/null | tr -d '[:space:]' || true)
if [ "$chosen" = "$name" ]; then
  # A volume Docker did not fill from the image (a bind mount, an emptied volume) starts seeded here.
  [ -d "$datadir/mysql" ] || { echo "halab-galera: $name seeds a new data directory in $datadir"; seed; }
  # The lab chose this member from every member's grastate.dat: Galera refuses to bootstrap from a
  # member not marked safe, so mark it.
  sed -i 's/^safe_to_bootstrap: 0/safe_to_bootstrap: 1/' "$datadir/grastate.dat"
  set -- --wsrep-new-cluster "$@"
else
  # A joiner holds the image's seeded state or its own history: it catches up by incremental
  # transfer when the donor's write-set cache reaches back to its seqno, else by a mariabackup
  # copy, which runs before InnoDB starts. Nothing to initialise here either way.
  echo "halab-galera: $name joins ${HALAB_GALERA_PEERS}"
fi
python3 /usr/local/bin/clustercheck.py --port 9200 &
# shellcheck disable=SC2046
exec mariadbd --defaults-extra-file="$cnf" --datadir="$datadir" --bind-address=0.0.0.0 --port=3306 --skip-name-resolve \
  --character-set-server=utf8mb4 $(wsrep) "$@"
