#!/bin/sh
# Initialise the data directory on first start, (re)apply the application user from the
# *_FILE secrets through an init file on tmpfs (never a command line), then run mariadbd.
set -eu
secret() {  # secret NAME: value of $NAME, else the content of the file $NAME_FILE
  eval "v=\${$1:-}"; eval "f=\${$1_FILE:-}"
  if [ -z "$v" ] && [ -n "$f" ]; then v=$(cat "$f"); fi
  printf '%s' "$v"
}
sql_quote() { printf '%s' "$1" | sed "s/\\\\/\\\\\\\\/g; s/'/\\\\'/g"; }

datadir=/var/lib/mysql
if [ ! -d "$datadir/mysql" ]; then
  echo "halab-db: initialising $datadir"
  mariadb-install-db --datadir="$datadir" --skip-test-db --auth-root-authentication-method=socket >/dev/null
fi
db=${MYSQL_DATABASE:-cattle}
user=${MYSQL_USER:-cattle}
pw=$(sql_quote "$(secret MYSQL_PASSWORD)")
[ -n "$pw" ] || { echo "halab-db: MYSQL_PASSWORD or MYSQL_PASSWORD_FILE is required" >&2; exit 1; }
umask 077
init=/run/mysqld/init.sql
cat >"$init" <<SQL
CREATE DATABASE IF NOT EXISTS \`$db\` CHARACTER SET utf8mb4;
CREATE USER IF NOT EXISTS '$user'@'%' IDENTIFIED BY '$pw';
ALTER USER '$user'@'%' IDENTIFIED BY '$pw';
GRANT ALL PRIVILEGES ON \`$db\`.* TO '$user'@'%';
-- The container's own OS user administers over the socket (labsql), with no password at all.
CREATE USER IF NOT EXISTS 'mysql'@'localhost' IDENTIFIED VIA unix_socket;
GRANT ALL PRIVILEGES ON *.* TO 'mysql'@'localhost' WITH GRANT OPTION;
FLUSH PRIVILEGES;
SQL
unset pw
exec mariadbd --datadir="$datadir" --bind-address=0.0.0.0 --port=3306 --skip-name-resolve \
  --character-set-server=utf8mb4 --init-file="$init" "$@"
