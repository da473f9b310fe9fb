-- wrk script for bench/run.sh.
-- BENCH_POST_BYTES=N turns every request into a POST with an N-byte body.
-- No request()/response() hooks: the request is built once and wrk's fast
-- path stays on, so the load generator spends its CPU on sending load.
-- done() prints one machine-readable line, prefixed "BENCHJSON ".

local post = tonumber(os.getenv("BENCH_POST_BYTES") or "")
if post and post > 0 then
  wrk.method = "POST"
  wrk.body = string.rep("x", post)
  wrk.headers["Content-Type"] = "application/octet-stream"
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,' ..
    '"lat_mean_us":%.1f,"lat_p50_us":%d,"lat_p90_us":%d,"lat_p99_us":%d,"lat_max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
