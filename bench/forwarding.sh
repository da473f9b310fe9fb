# shellcheck shell=bash
# Which forwarding headers the proxies of the load benchmarks set
# (bench/run.sh, bench/scale.sh, bench/profile.sh), so that all are
# configured the same way. By default none sets any: sluice is told not to
# (its forwarding block), nginx and HAProxy do not unless told. With
# FORWARDED=1 (--forwarded-headers) all three set the four sluice sets by
# default (see README, Forwarding). Caddy and Go's httputil keep their own
# defaults either way (Caddy sets the X-Forwarded ones, httputil
# X-Forwarded-For). Source it; do not run it.

# sluice_forwarding: the sluice config's forwarding block.
sluice_forwarding() {
  [ "${FORWARDED:-0}" = 1 ] && return 0
  printf 'forwarding: { x_forwarded_for: pass, x_forwarded_proto: false, x_forwarded_host: false, request_id: false }\n'
}

nginx_forwarded_map() {
  [ "${FORWARDED:-0}" = 1 ] || return 0
  printf '  map $http_x_request_id $fwd_request_id { default $http_x_request_id; "" $request_id; }\n'
}
nginx_forwarded_headers() {
  [ "${FORWARDED:-0}" = 1 ] || return 0
  printf '      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n'
  printf '      proxy_set_header X-Forwarded-Proto $scheme;\n'
  printf '      proxy_set_header X-Forwarded-Host $host;\n'
  printf '      proxy_set_header X-Request-Id $fwd_request_id;\n'
}
haproxy_forwarded_headers() {
  [ "${FORWARDED:-0}" = 1 ] || return 0
  printf '  option forwardfor\n'
  printf '  http-request set-header X-Forwarded-Proto http\n'
  printf '  http-request set-header X-Forwarded-Host %%[req.hdr(host)]\n'
  printf '  http-request set-header X-Request-Id %%[uuid] unless { req.hdr(x-request-id) -m found }\n'
}
