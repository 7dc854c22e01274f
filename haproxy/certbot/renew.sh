#!/usr/bin/env bash
# Renew Let's Encrypt certificates with certbot and hand them to HAProxy, from cron (renew.cron).
#
# For each domain: haproxy/ssl/<domain>.pem = fullchain + private key, replaced atomically and only
# when its content changed; HAProxy is reloaded (graceful, no dropped connections) only if a file
# changed. A certbot failure leaves every installed pem as it was and exits non-zero. Runs are
# serialised with a lock, and a second run with nothing new changes nothing: safe to run twice.
#
# Settings (environment):
#   DOMAINS            space-separated certificate names (default: every lineage in live/)
#   LETSENCRYPT_DIR    certbot's config dir (default /etc/letsencrypt)
#   SSL_DIR            where HAProxy reads certificates (default: haproxy/ssl next to this script)
#   SSL_GID            group that may read the pems: the haproxy image's user is 99 (default 99)
#   CERTBOT            certbot command (default certbot)
#   CERTBOT_ARGS       `certbot renew` options (default --http-01-port 8888: HAProxy owns port 80 and
#                      forwards ACME challenges to 8888; ignored for DNS challenges)
#   HAPROXY_RELOAD_CMD reload command (default: SIGHUP to the production compose's haproxy)
#   LOCK_FILE          default /run/lock/dts-certbot-renew.lock (or /tmp if /run/lock is missing)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
LETSENCRYPT_DIR="${LETSENCRYPT_DIR:-/etc/letsencrypt}"
SSL_DIR="${SSL_DIR:-$REPO/haproxy/ssl}"
SSL_GID="${SSL_GID:-99}"
CERTBOT="${CERTBOT:-certbot}"
CERTBOT_ARGS="${CERTBOT_ARGS---http-01-port 8888}"
HAPROXY_RELOAD_CMD="${HAPROXY_RELOAD_CMD:-docker compose --project-directory $REPO/docker -f $REPO/docker/docker-compose.yaml -f $REPO/docker/docker-compose-production.yaml kill -s HUP haproxy}"
LOCK_DIR=/run/lock
[ -d "$LOCK_DIR" ] || LOCK_DIR=/tmp
LOCK_FILE="${LOCK_FILE:-$LOCK_DIR/dts-certbot-renew.lock}"
# New pems are staged beside SSL_DIR (same filesystem, so `mv` is atomic) and not inside it:
# HAProxy loads every file in that folder.
STAGING_DIR="$(dirname "$SSL_DIR")/.ssl-staging"

log() { printf '%s renew.sh: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*"; }

exec 9>"$LOCK_FILE"
if ! flock -w 900 9; then
  log "ERROR: another renewal still holds $LOCK_FILE after 15 minutes; nothing done"
  exit 75
fi

mkdir -p "$SSL_DIR" "$STAGING_DIR"
trap 'rm -f "$STAGING_DIR"/*.pem.tmp' EXIT

log "running: $CERTBOT renew $CERTBOT_ARGS"
set +e
# shellcheck disable=SC2086  # CERTBOT_ARGS is a list of words on purpose
"$CERTBOT" renew $CERTBOT_ARGS
certbot_status=$?
set -e
if [ "$certbot_status" -ne 0 ]; then
  log "ERROR: certbot exited with $certbot_status; installed certificates in $SSL_DIR left as they were"
  exit "$certbot_status"
fi

domains="${DOMAINS:-}"
if [ -z "$domains" ]; then
  for dir in "$LETSENCRYPT_DIR"/live/*/; do
    [ -f "$dir/fullchain.pem" ] && domains+=" $(basename "$dir")"
  done
fi
if [ -z "${domains// /}" ]; then
  log "ERROR: no certificates found under $LETSENCRYPT_DIR/live (set DOMAINS or run certbot certonly first)"
  exit 1
fi

changed=0
failed=0
for domain in $domains; do
  live="$LETSENCRYPT_DIR/live/$domain"
  target="$SSL_DIR/$domain.pem"
  staged="$STAGING_DIR/$domain.pem.tmp"
  if [ ! -r "$live/fullchain.pem" ] || [ ! -r "$live/privkey.pem" ]; then
    log "ERROR: $domain: $live/fullchain.pem or privkey.pem is missing; $target left as it was"
    failed=1
    continue
  fi
  # Refuse a certificate that does not parse or does not belong to the key next to it.
  cert_key="$(openssl x509 -in "$live/fullchain.pem" -noout -pubkey 2>/dev/null || true)"
  private_key="$(openssl pkey -in "$live/privkey.pem" -pubout 2>/dev/null || true)"
  if [ -z "$cert_key" ] || [ "$cert_key" != "$private_key" ]; then
    log "ERROR: $domain: certificate and key in $live do not match; $target left as it was"
    failed=1
    continue
  fi
  (umask 077 && cat "$live/fullchain.pem" "$live/privkey.pem" >"$staged")
  if [ -f "$target" ] && cmp -s "$staged" "$target"; then
    rm -f "$staged"
    log "$domain: unchanged"
    continue
  fi
  chgrp "$SSL_GID" "$staged" 2>/dev/null || log "warning: could not give group $SSL_GID read access to $target"
  chmod 0640 "$staged"
  mv -f "$staged" "$target"
  changed=1
  log "$domain: installed new certificate ($(openssl x509 -in "$target" -noout -enddate))"
done

if [ "$changed" -eq 1 ]; then
  log "reloading HAProxy: $HAPROXY_RELOAD_CMD"
  if ! bash -c "$HAPROXY_RELOAD_CMD"; then
    log "ERROR: HAProxy reload failed; new certificates are in place and load on its next start"
    exit 1
  fi
  log "HAProxy reloaded"
else
  log "no certificate changed; HAProxy not reloaded"
fi
exit "$failed"
