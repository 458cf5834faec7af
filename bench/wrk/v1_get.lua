-- IMDSv1 (token-less) GET of the instance id.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "result.lua")
local req
function init(args) req = wrk.format("GET", "/latest/meta-data/instance-id") end
function request() return req end
