#!/bin/sh
# Creates Temporal's two databases (temporal, temporal_visibility) in the
# postgres service and brings their schemas to the version this admin-tools
# image carries. Safe to run again: an existing database is kept and
# update-schema applies only the missing versions.
set -eu
host=postgres
schema_dir=/etc/temporal/schema/postgresql/v12

echo "waiting for PostgreSQL at $host:5432"
until nc -z "$host" 5432; do sleep 1; done

for db in temporal visibility; do
  name=temporal
  [ "$db" = visibility ] && name=temporal_visibility
  sql() { temporal-sql-tool --plugin postgres12 --ep "$host" -p 5432 -u temporal --db "$name" "$@"; }
  sql create || echo "database $name exists"
  sql setup-schema -v 0.0
  sql update-schema -d "$schema_dir/$db/versioned"
done
echo "Temporal schemas are up to date"
