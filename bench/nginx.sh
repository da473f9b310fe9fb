# nginx config pieces shared by bench/run.sh (through lib.sh) and
# bench/scale.sh. Source it; do not run it.

# nginx_main DIR: the main-context lines of bench/run.sh's nginx instances
# (the upstreams and the nginx target): one worker in the foreground under a
# master, pid and error log inside DIR.
nginx_main() {
  local d=$1
  cat <<EOF
worker_processes 1;
daemon off;
master_process on;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 4096; }
EOF
}

# nginx_http_common DIR: the http{} lines every nginx of the benchmarks has:
# no access log, keep-alive without limits, temp files inside DIR.
nginx_http_common() {
  local d=$1
  cat <<EOF
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  client_body_temp_path $d/tmp/body;
  proxy_temp_path $d/tmp/proxy;
  fastcgi_temp_path $d/tmp/fastcgi;
  uwsgi_temp_path $d/tmp/uwsgi;
  scgi_temp_path $d/tmp/scgi;
EOF
}

# nginx_proxy_buffers: 16 KiB buffers like HAProxy's tune.bufsize; nginx's
# 8 x 4 KiB default costs about 1.5x the CPU per 64 KiB response. Never spill
# responses to disk.
nginx_proxy_buffers() {
  cat <<EOF
  proxy_buffer_size 16k;
  proxy_buffers 8 16k;
  proxy_busy_buffers_size 32k;
  proxy_max_temp_file_size 0;
EOF
}
