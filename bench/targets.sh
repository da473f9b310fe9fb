# shellcheck shell=bash
# Targets of the load benchmarks (bench/run.sh, bench/syscalls.sh): how
# each proxy is configured and started, and the scenarios' parameters.
# Sourced after lib.sh. Set FORWARDED=1 before start_target for
# --forwarded-headers (see forwarding.sh); BENCH_BASE_BIN names the
# sluice-base binary.

# scenario -> "connections path post_bytes"
scenario_params() {
  case $1 in
    a) echo "64 /1k 0" ;;
    b) echo "256 /1k 0" ;;
    c) echo "64 /64k 0" ;;
    d) echo "64 /post 16384" ;;
  esac
}

# start_target NAME DIR: sets T_PID ("" for direct) and T_PORT.
start_target() {
  local name=$1 d=$2
  mkdir -p "$d"
  T_PID="" T_PORT=$PROXY_PORT T_STOPSIG=TERM
  if [ "$name" != direct ] && port_busy "$PROXY_PORT"; then
    # Something still listens there (a worker an earlier target left):
    # the target would be measured against it (found by review).
    warn "$name: port $PROXY_PORT is still in use before the target starts"
    return 1
  fi
  case $name in
    direct)
      T_PORT=$UP1_PORT
      return 0 ;;
    nginx)
      mkdir -p "$d/tmp"
      cat >"$d/nginx.conf" <<EOF
$(nginx_main "$d")
http {
$(nginx_http_common "$d")
  client_body_buffer_size 64k;
$(nginx_proxy_buffers)
$(nginx_forwarded_map)
  upstream up {
    server 127.0.0.1:$UP1_PORT;
    server 127.0.0.1:$UP2_PORT;
    # At least as many idle connections as scenario b has clients: with
    # fewer (64 until 2026-11-26), nginx opened a new upstream connection
    # for 61% of b's requests, which the reuse check flagged.
    keepalive 256;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
  }
  server {
    listen 127.0.0.1:$PROXY_PORT backlog=4096;
    location / {
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
$(nginx_forwarded_headers)
    }
  }
}
EOF
      taskset -c "$PROXY_CPU" nginx -p "$d" -e "$d/error.log" -c "$d/nginx.conf" >"$d/stdout.log" 2>&1 &
      ;;
    haproxy)
      cat >"$d/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 4096
defaults
  mode http
  maxconn 4096
  option http-keep-alive
  http-reuse always
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
frontend fe
  bind 127.0.0.1:$PROXY_PORT
$(haproxy_forwarded_headers)
  default_backend up
backend up
  balance roundrobin
  server up1 127.0.0.1:$UP1_PORT
  server up2 127.0.0.1:$UP2_PORT
EOF
      T_STOPSIG=USR1  # soft stop; SIGTERM is haproxy's hard stop (exit 143)
      taskset -c "$PROXY_CPU" haproxy -db -f "$d/haproxy.cfg" >"$d/stdout.log" 2>&1 &
      ;;
    caddy)
      cat >"$d/Caddyfile" <<EOF
{
	admin off
	auto_https off
}
http://127.0.0.1:$PROXY_PORT {
	reverse_proxy 127.0.0.1:$UP1_PORT 127.0.0.1:$UP2_PORT {
		lb_policy round_robin
		transport http {
			keepalive_idle_conns_per_host 256
		}
	}
}
EOF
      HOME="$d" XDG_DATA_HOME="$d/data" XDG_CONFIG_HOME="$d/config" GOMAXPROCS=1 \
        taskset -c "$PROXY_CPU" caddy run --adapter caddyfile --config "$d/Caddyfile" >"$d/stdout.log" 2>&1 &
      ;;
    httputil)
      GOMAXPROCS=1 taskset -c "$PROXY_CPU" "$WORK_DIR/httputilproxy" -listen "127.0.0.1:$PROXY_PORT" \
        -upstreams "127.0.0.1:$UP1_PORT,127.0.0.1:$UP2_PORT" >"$d/stdout.log" 2>&1 &
      ;;
    sluice|sluice-log|sluice-base)
      write_sluice_conf "$d/sluice.yaml"
      if [ "$name" = sluice-log ]; then
        sed -i "s|^access_log: .*|access_log: { enabled: true, path: $d/access.log, sample: 1.0 }|" "$d/sluice.yaml"
      fi
      local bin=$WORK_DIR/sluice
      [ "$name" = sluice-base ] && bin=$BENCH_BASE_BIN
      GOMAXPROCS=1 taskset -c "$PROXY_CPU" "$bin" -config "$d/sluice.yaml" >"$d/stdout.log" 2>&1 &
      ;;
  esac
  T_PID=$!
  STARTED_PIDS+=("$T_PID")
  if ! wait_http "http://127.0.0.1:$T_PORT/1k" 15 || ! kill -0 "$T_PID" 2>/dev/null; then
    warn "$name did not start: $(tail -n 5 "$d/stdout.log" "$d/error.log" 2>/dev/null | tr '\n' ' ')"
    stop_pid "$T_PID" 2
    return 1
  fi
  return 0
}

