-- Turns a service's gRPC error into the documented JSON error body:
-- services abort with grpc-message = the exact JSON body. Native gRPC callers are untouched.
function envoy_on_request(handle)
  -- HTTP allows header names gRPC metadata does not (e.g. "x%y"): the service would fail
  -- the call (500) before any of our code runs, so such headers are dropped here.
  local illegal = {}
  for name, _ in pairs(handle:headers()) do
    if name:sub(1, 1) ~= ":" and name:find("[^a-z0-9%-%._]") then illegal[#illegal + 1] = name end
  end
  for _, name in ipairs(illegal) do handle:headers():remove(name) end
  -- Druid clients post to /druid/v2/sql/; the transcoder cannot bind a trailing slash
  local path = handle:headers():get(":path") or ""
  if path == "/druid/v2/sql/" or path:sub(1, 15) == "/druid/v2/sql/?" then
    handle:headers():replace(":path", "/druid/v2/sql" .. path:sub(15))
  end
  -- the Statistics resource is documented with trailing slashes: /v1/stats/x/ is
  -- bound as /v1/stats/x; the query string is kept
  local q = path:find("?", 1, true)
  local stem, query = path, ""
  if q then stem, query = path:sub(1, q - 1), path:sub(q) end
  if stem:sub(1, 10) == "/v1/stats/" and #stem > 10 and stem:sub(-1) == "/" then
    handle:headers():replace(":path", (stem:gsub("/+$", "")) .. query)
  end
  local ctype = handle:headers():get("content-type") or ""
  if ctype:sub(1, 16) == "application/grpc" then
    handle:streamInfo():dynamicMetadata():set("edgestats", "grpc", "1")
  end
end

function envoy_on_response(handle)
  local meta = handle:streamInfo():dynamicMetadata():get("edgestats")
  if meta and meta.grpc then return end
  local headers = handle:headers()
  local status, message = headers:get("grpc-status"), headers:get("grpc-message")
  local http_status = headers:get("x-http-status")
  for _, name in ipairs({"grpc-status", "grpc-message", "grpc-accept-encoding",
                         "grpc-status-details-bin", "x-http-status"}) do
    headers:remove(name)
  end
  if status == nil or status == "0" then  -- success: untouched, never buffered
    -- a success status other than 200 (e.g. 202 of CancelQuery) rides in initial metadata
    if http_status then headers:replace(":status", http_status) end
    return
  end
  local body = (message or ""):gsub("%%(%x%x)", function(x) return string.char(tonumber(x, 16)) end)
  if body:sub(1, 1) ~= "{" then  -- not one of our bodies: never leak text
    if status == "8" then
      -- grpc.aio refused the call: the process serves its maximum of concurrent RPCs (overload)
      headers:replace(":status", "503")
      headers:replace("retry-after", "1")
      body = '{"detail":"Service Unavailable"}'
    else
      body = '{"detail":"Internal Server Error"}'
    end
  end
  if http_status then headers:replace(":status", http_status) end
  headers:replace("content-type", "application/json")
  handle:body(true):setBytes(body)
end
