#!/bin/sh
# A Galera member of the lab (lab/cluster/galera.py renders its settings; docs/galera.md).
#   entrypoint.sh [MARIADBD ARGS...]  start: bootstrap a new primary component only when the file
#                                     $HALAB_GALERA_BOOTSTRAP_FILE names this member, join otherwise
#   entrypoint.sh grastate            print grastate.dat, nothing when there is none (the lab reads
#                                     every member's after a full stop)
#   entrypoint.sh recover             print the position `mariadbd --wsrep-recover` finds (seqno -1)
# The lab, not this script, chooses the member to bootstrap (lab/cluster/grastate.py) and empties
# the file once that member is primary, so that a member restarted later joins instead of starting
# a second cluster.
set -eu
datadir=/var/lib/mysql
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

secret() {  # secret NAME: value of $NAME, else the content of the file $NAME_FILE
  eval "v=\${$1:-}"; eval "f=\${$1_FILE:-}"
  if [ -z "$v" ] && [ -n "$f" ]; then v=$(cat "$f"); fi
  printf '%s' "$v"
}
sql_quote() { printf '%s' "$1" | sed "s/\\\\/\\\\\\\\/g; s/'/\\\\'/g"; }

chosen=$(cat "${HALAB_GALERA_BOOTSTRAP_FILE:-/dev/null}" 2>/dev/null | tr -d '[:space:]' || true)
if [ "$chosen" = "$name" ]; then
  if [ ! -d "$datadir/mysql" ]; then
    echo "halab-galera: $name initialises a new cluster in $datadir"
    mariadb-install-db --datadir="$datadir" --skip-test-db --auth-root-authentication-method=socket >/dev/null
  fi
  # The lab chose this member from every member's grastate.dat: Galera refuses to bootstrap from a
  # member not marked safe, so mark it.
  [ ! -f "$datadir/grastate.dat" ] || sed -i 's/^safe_to_bootstrap: 0/safe_to_bootstrap: 1/' "$datadir/grastate.dat"
  db=${MYSQL_DATABASE:-cattle}
  user=${MYSQL_USER:-cattle}
  pw=$(sql_quote "$(secret MYSQL_PASSWORD)")
  [ -n "$pw" ] || { echo "halab-galera: MYSQL_PASSWORD or MYSQL_PASSWORD_FILE is required" >&2; exit 1; }
  umask 077
  init=/run/mysqld/init.sql
  # Replicated to the joiners; mariabackup's state transfer connects as the OS user mysql over the
  # socket (unix_socket: --wsrep-sst-auth=mysql: names the user, no password exists).
  cat >"$init" <<SQL
CREATE DATABASE IF NOT EXISTS \`$db\` CHARACTER SET utf8mb4;
CREATE USER IF NOT EXISTS '$user'@'%' IDENTIFIED BY '$pw';
ALTER USER '$user'@'%' IDENTIFIED BY '$pw';
GRANT ALL PRIVILEGES ON \`$db\`.* TO '$user'@'%';
CREATE USER IF NOT EXISTS 'mysql'@'localhost' IDENTIFIED VIA unix_socket;
GRANT ALL PRIVILEGES ON *.* TO 'mysql'@'localhost' WITH GRANT OPTION;
FLUSH PRIVILEGES;
SQL
  unset pw
  set -- --wsrep-new-cluster --init-file="$init" "$@"
else
  # A joiner with an empty data directory gets everything by state transfer, which mariabackup
  # runs before InnoDB starts: nothing to initialise here.
  echo "halab-galera: $name joins ${HALAB_GALERA_PEERS}"
fi
python3 /usr/local/bin/clustercheck.py --port 9200 &
# shellcheck disable=SC2046
exec mariadbd --defaults-extra-file="$cnf" --datadir="$datadir" --bind-address=0.0.0.0 --port=3306 --skip-name-resolve \
  --character-set-server=utf8mb4 $(wsrep) "$@"
