#!/bin/sh
# As the official image: options alone run haproxy; haproxy runs in the foreground in master-worker mode.
set -e
case "$1" in -*) set -- haproxy "$@" ;; esac
if [ "$1" = haproxy ]; then
  shift
  set -- haproxy -W -db "$@"
fi
exec "$@"
