-- IMDSv2 GET of the instance id with a session token.
-- wrk -s v2_get.lua http://HOST:PORT -- TOKEN
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "result.lua")
local req
function init(args)
  local token = args[1] or error("usage: wrk -s v2_get.lua URL -- TOKEN")
  req = wrk.format("GET", "/latest/meta-data/instance-id", { ["X-aws-ec2-metadata-token"] = token })
end
function request() return req end
