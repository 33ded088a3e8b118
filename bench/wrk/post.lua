-- wrk script for freeapi's benchmark: POST a chat completion, print a JSON summary.
--   BENCH_MODEL   model name (default deepseek-chat)
--   BENCH_STREAM  1 for stream:true (the fake upstream answers 20 SSE chunks)
--   BENCH_AUTH    bearer token sent as Authorization
--   BENCH_HEADERS extra headers, "Name: value" separated by "|"
--   BENCH_DIALECT anthropic: an Anthropic Messages body (for /v1/messages);
--                 responses: an OpenAI Responses body (for /v1/responses)
local model = os.getenv("BENCH_MODEL") or "deepseek-chat"
local stream = os.getenv("BENCH_STREAM") == "1"
local anthropic = os.getenv("BENCH_DIALECT") == "anthropic"
local responses = os.getenv("BENCH_DIALECT") == "responses"

wrk.method = "POST"
if responses then
  wrk.body = '{"model":"' .. model .. '","input":"Say hello.","store":false'
    .. (stream and ',"stream":true' or '') .. '}'
else
  wrk.body = '{"model":"' .. model .. '",' .. (anthropic and '"max_tokens":64,' or '')
    .. '"messages":[{"role":"user","content":"Say hello."}]'
    .. (stream and ',"stream":true' or '') .. '}'
end
wrk.headers["Content-Type"] = "application/json"
local auth = os.getenv("BENCH_AUTH")
if auth and auth ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. auth
end
local extra = os.getenv("BENCH_HEADERS") or ""
for name, value in extra:gmatch("([^:|]+):%s*([^|]*)") do
  wrk.headers[name:match("^%s*(.-)%s*$")] = value
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d,' ..
    '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
