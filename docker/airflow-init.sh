#!/usr/bin/env bash
# The compose stack's one-shot start-up step (service airflow-init); every other Airflow service
# waits for it to succeed. In order:
#   1. in production, refuse unsafe settings (example or malformed Fernet key, weak admin or
#      metadata-database password);
#   2. migrate the metadata database;
#   3. create the admin user from _AIRFLOW_WWW_USER_USERNAME/_PASSWORD (FAB auth manager);
#   4. in development, pause every DAG so nothing runs by surprise on a laptop.
# It runs on every `docker compose up`, so each step is safe to repeat.
# `airflow-init.sh --check` stops after step 1:
#   docker compose run --rm --no-deps airflow-init /opt/dts/airflow-init.sh --check
set -euo pipefail

ENVIRONMENT="${ENVIRONMENT:-development}"
# Keys published in .env.example and in the team's old README: fine on a laptop, never in production.
EXAMPLE_FERNET_KEYS=("PTkIRwL-c46jgnaohlkkXfVikC-roKa95ipXfqST7JM=")
WEAK_PASSWORDS=("airflow" "admin" "password" "postgres" "changeme" "change-me")
MIN_PASSWORD_LENGTH=12

log() { echo "airflow-init: $*"; }
fail() {
  echo "airflow-init: ERROR: $*" >&2
  exit 1
}

check_production_settings() {
  local fernet="${AIRFLOW__CORE__FERNET_KEY:-}" key example password="${_AIRFLOW_WWW_USER_PASSWORD:-}"
  [ -n "$fernet" ] || fail "no Fernet key: set _AIRFLOW__CORE__FERNET_KEY in docker/.env (see README, Deploying)"
  # Airflow accepts "new,old" while rotating keys; every part must be a real key.
  IFS=',' read -r -a keys <<<"$fernet"
  for key in "${keys[@]}"; do
    for example in "${EXAMPLE_FERNET_KEYS[@]}"; do
      [ "$key" != "$example" ] || fail "_AIRFLOW__CORE__FERNET_KEY is the published example key; generate one with:" \
        "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
    done
    FERNET_KEY_TO_CHECK="$key" python -c 'import os; from cryptography.fernet import Fernet; Fernet(os.environ["FERNET_KEY_TO_CHECK"])' \
      2>/dev/null || fail "_AIRFLOW__CORE__FERNET_KEY is not a valid Fernet key (32 url-safe base64-encoded bytes)"
  done
  [ -n "$password" ] || fail "no admin password: set _AIRFLOW_WWW_USER_PASSWORD in docker/.env"
  check_password_strength _AIRFLOW_WWW_USER_PASSWORD "$password"
  check_database_password
  log "production settings checked (Fernet key, admin password, database password)"
}

# The password Airflow connects with, read from the URL it really uses, so a hand-written
# AIRFLOW__DATABASE__SQL_ALCHEMY_CONN is checked too. Postgres is published for remote workers in
# production (REMOTE_WORKER_BIND), so the example password would open the metadata DB to the LAN.
check_database_password() {
  local url="${AIRFLOW__DATABASE__SQL_ALCHEMY_CONN:-}" password
  [[ "$url" == postgres* ]] || return 0
  password="$(DATABASE_URL_TO_CHECK="$url" python -c \
    'import os; from sqlalchemy.engine import make_url; print(make_url(os.environ["DATABASE_URL_TO_CHECK"]).password or "")')" ||
    fail "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN is not a database URL"
  [ -n "$password" ] || fail "the metadata database URL has no password: set POSTGRES_PASSWORD in docker/.env"
  check_password_strength "POSTGRES_PASSWORD (the metadata database password)" "$password" \
    "(an existing database keeps its old password: README, Upgrading Airflow, last paragraph)"
}

# Refuse a well-known default or a short password; the message names the setting ($1), never the value.
check_password_strength() {
  local name="$1" password="$2" hint="${3:-}" weak
  for weak in "${WEAK_PASSWORDS[@]}"; do
    [ "${password,,}" != "$weak" ] || fail "$name is a well-known default; pick a real one${hint:+ $hint}"
  done
  [ "${#password}" -ge "$MIN_PASSWORD_LENGTH" ] || fail "$name is shorter than $MIN_PASSWORD_LENGTH characters"
}

create_admin_user() {
  local auth_manager
  auth_manager="$(airflow config get-value core auth_manager)"
  if [[ "$auth_manager" != *FabAuthManager ]]; then
    log "auth manager is $auth_manager, not FAB: no admin user to create"
    return 0
  fi
  # `users create` leaves an existing user alone (change its password in the UI or with
  # `airflow users reset-password`).
  airflow users create \
    --username "${_AIRFLOW_WWW_USER_USERNAME:-airflow}" \
    --password "${_AIRFLOW_WWW_USER_PASSWORD:-airflow}" \
    --firstname "${_AIRFLOW_WWW_USER_FIRSTNAME:-Airflow}" \
    --lastname "${_AIRFLOW_WWW_USER_LASTNAME:-Admin}" \
    --email "${_AIRFLOW_WWW_USER_EMAIL:-airflowadmin@example.com}" \
    --role Admin
}

pause_dags_in_development() {
  if [ "$ENVIRONMENT" != development ]; then
    log "ENVIRONMENT=$ENVIRONMENT: DAG pause states left as they are"
    return 0
  fi
  # DAGs the DAG processor has not seen yet start paused too ([core] dags_are_paused_at_creation),
  # unless a DAG sets is_paused_upon_creation=False.
  log "ENVIRONMENT=development: pausing every DAG; unpause the ones you work on in the UI"
  airflow dags pause --treat-dag-id-as-regex --yes '.*'
}

main() {
  log "ENVIRONMENT=$ENVIRONMENT"
  [ "$ENVIRONMENT" != production ] || check_production_settings
  if [ "${1:-}" = --check ]; then
    log "settings checked; stopping (--check)"
    return 0
  fi
  log "Airflow $(airflow version)"
  mkdir -p "${AIRFLOW_HOME:-/opt/airflow}"/{logs,plugins,config}
  # Writes airflow.cfg into the shared config volume on first start; it carries generated secrets
  # ([api] secret_key, [api_auth] jwt_secret) that every container must share in development.
  airflow config list >/dev/null
  airflow db migrate
  create_admin_user
  pause_dags_in_development
  # Airflow runs as AIRFLOW_UID and writes logs and config; the DAGs checkout is left alone.
  if [ -n "${AIRFLOW_UID:-}" ] && [ "$(id -u)" = 0 ]; then
    chown -R "${AIRFLOW_UID}:0" "${AIRFLOW_HOME:-/opt/airflow}"/{logs,plugins,config}
  fi
  log "done"
}

main "$@"
