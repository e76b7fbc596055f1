#!/bin/sh
# Initialises the data directory on first start (lower_case_table_names can
# only be chosen then), creates the schema and the dashboard's user, then runs
# mariadbd in the foreground on MARIADB_PORT.
set -eu
: "${PI_DB_PASSWORD:?PI_DB_PASSWORD must be set to the password for the dashboard user}"
case "$MARIADB_PORT" in ''|*[!0-9]*) echo "MARIADB_PORT must be a port number" >&2; exit 78 ;; esac
case "$PI_DB_SCHEMA_NAME$PI_DB_USERNAME" in *[!A-Za-z0-9_]*)
    echo "PI_DB_SCHEMA_NAME and PI_DB_USERNAME may hold letters, digits and _ only" >&2; exit 78 ;; esac

datadir=/var/lib/mysql
if [ ! -d "$datadir/mysql" ]; then
    echo "pi-mariadb: initialising $datadir" >&2
    mariadb-install-db --user=mysql --datadir="$datadir" --skip-test-db >/dev/null
    mariadbd --user=mysql --datadir="$datadir" --skip-networking --socket=/run/mysqld/init.sock &
    pid=$!
    i=0
    until mariadb-admin --socket=/run/mysqld/init.sock ping >/dev/null 2>&1; do
        i=$((i + 1)); [ "$i" -lt 120 ] || { echo "pi-mariadb: server did not start" >&2; exit 1; }
        sleep 0.5
    done
    # The password goes through stdin, never a command line.
    pw=$(printf '%s' "$PI_DB_PASSWORD" | sed "s/\\\\/\\\\\\\\/g; s/'/\\\\'/g")
    mariadb --socket=/run/mysqld/init.sock <<SQL
CREATE DATABASE IF NOT EXISTS \`$PI_DB_SCHEMA_NAME\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE USER IF NOT EXISTS '$PI_DB_USERNAME'@'127.0.0.1' IDENTIFIED BY '$pw';
CREATE USER IF NOT EXISTS '$PI_DB_USERNAME'@'localhost' IDENTIFIED BY '$pw';
GRANT ALL PRIVILEGES ON \`$PI_DB_SCHEMA_NAME\`.* TO '$PI_DB_USERNAME'@'127.0.0.1';
GRANT ALL PRIVILEGES ON \`$PI_DB_SCHEMA_NAME\`.* TO '$PI_DB_USERNAME'@'localhost';
FLUSH PRIVILEGES;
SQL
    mariadb-admin --socket=/run/mysqld/init.sock shutdown
    wait "$pid" || true
fi
exec mariadbd --user=mysql --datadir="$datadir" --port="$MARIADB_PORT"
