-- IMDSv2 session token PUT with the TTL header.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "result.lua")
local req
function init(args)
  req = wrk.format("PUT", "/latest/api/token", { ["X-aws-ec2-metadata-token-ttl-seconds"] = "21600" })
end
function request() return req end
