#!/usr/bin/env bash
# Zero-downtime upgrade of sluice between the blue and green instances of
# examples/sluice@.service. Install the new binary first, then run this.
# Both configs must set listen_reuseport: true and differ in admin.listen.
set -euo pipefail

# admin_of prints the admin listener of /etc/sluice/$1.yaml: admin.listen,
# in block (admin:\n  listen: X) or flow (admin: { listen: X }) style, or
# the default, 127.0.0.1:9901. Not the top-level listen, which is the proxy.
admin_of() {
  local addr
  # q is a single quote, which the awk program (in single quotes) cannot
  # hold; values may be quoted either way, lines may end in CRLF.
  # Keys may be quoted too ("admin":, 'listen':), as YAML and -check take
  # them (found by review: read as the default otherwise).
  addr=$(awk -v q="'" '
    BEGIN {
      k = "[\"" q "]?"
      lead = k "listen" k ":[ ]*[\"" q "]?"; stop = "[\"" q " ,}#\r].*$"
      admin = "^" k "admin" k ":"; inner = "^ +" k "listen" k ":"
    }
    $0 ~ admin {
      if (match($0, lead "[^\"" q " ,}#\r]+")) { v = substr($0, RSTART, RLENGTH); sub(lead, "", v); print v; exit }
      inadmin = 1; next
    }
    inadmin && /^[^ #\r]/ { exit }
    inadmin && $0 ~ inner { v = $0; sub("^ +" lead, "", v); sub(stop, "", v); print v; exit }
  ' "/etc/sluice/$1.yaml")
  addr=${addr:-127.0.0.1:9901}
  # An address with no host (":9902", every interface) is reached on
  # loopback; curl refuses "http://:9902/" (found by review).
  case $addr in
    :*) addr=127.0.0.1$addr ;;
  esac
  echo "$addr"
}

# Without it, the connections queued on the old listener when it closes are
# reset (see README, Zero-downtime restart and shutdown).
if [ "$(cat /proc/sys/net/ipv4/tcp_migrate_req 2>/dev/null || echo 0)" != 1 ]; then
  echo "sluice upgrade: set net.ipv4.tcp_migrate_req=1 first, or a few queued connections may be reset" >&2
fi

if systemctl is-active --quiet sluice@blue; then old=blue new=green; else old=green new=blue; fi
# The wait below polls the new instance's /readyz: with the old one's
# admin address it would find the old instance ready and stop it at once
# (found by review).
if [ "$(admin_of "$new")" = "$(admin_of "$old")" ]; then
  echo "sluice upgrade: /etc/sluice/$old.yaml and $new.yaml have the same admin.listen ($(admin_of "$new")); give each its own" >&2
  exit 1
fi
# The unit checks the config itself (ExecStartPre, as its own user: a check
# run here as root would create the access log root's).
systemctl start "sluice@$new"
for _ in $(seq 1 100); do
  curl -fsS "http://$(admin_of "$new")/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "http://$(admin_of "$new")/readyz" >/dev/null
# The old instance now serves for shutdown_delay, then finishes in-flight
# requests and exits; the new one takes every new connection.
systemctl stop "sluice@$old"
echo "sluice: $old -> $new"
