#!/bin/sh
# Runs once, when the postgres service initialises its data directory
# (docker-entrypoint-initdb.d): makes Gosling's store database and its
# owner. Temporal's databases are made by the temporal-schema service.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v gosling_password="${GOSLING_DB_PASSWORD:?set GOSLING_DB_PASSWORD}" <<'SQL'
CREATE ROLE gosling LOGIN PASSWORD :'gosling_password';
CREATE DATABASE gosling OWNER gosling;
SQL
