#!/bin/sh
# Runs `orderflow serve "$@"` with its HTTP port reachable from outside the container.
#
# `orderflow serve` binds its HTTP server (the order API and /admin/) to 127.0.0.1 only
# (apps/orderflow/src/run.rs, `http`), which nothing outside the container can reach. Until
# it takes a bind address, socat forwards the container's port ORDERFLOW_PORT (8080) to
# 127.0.0.1:ORDERFLOW_INTERNAL_PORT (8081), where OrderFlow listens.
#
# Through the forward the order API answers as usual. The admin routes under /admin/ still
# answer only requests whose Host is a loopback name (they have no token here): probes send
# `Host: localhost` (deploy/k8s), and /admin/metrics is not for Prometheus; the queue
# metrics come from `tidings dashboard` (the `admin` service), which takes a token.
set -eu
port="${ORDERFLOW_PORT:-8080}"
internal="${ORDERFLOW_INTERNAL_PORT:-8081}"
socat "TCP-LISTEN:${port},fork,reuseaddr" "TCP:127.0.0.1:${internal}" &
exec orderflow serve --port "${internal}" "$@"
