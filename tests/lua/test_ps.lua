-- dtf.ps from Lua without a running ps: shard_range, misuse raises with a
-- clear message, expected failures return nil, err naming the ps.
-- (Serving and training are covered by tests/unit/test_ps.c and the
-- integration tests hostile_peer.sh and ps_faults.sh.)
local check = require 'check'
local T = require 'dtf.tensor'
local ps = require 'dtf.ps'
local util = require 'dtf.util'

check.case('shard_range', function()
  local o, n = ps.shard_range(79510, 2, 0)
  check.eq(o, 0, 'offset 0'); check.eq(n, 39755, 'count 0')
  o, n = ps.shard_range(79510, 2, 1)
  check.eq(o, 39755, 'offset 1'); check.eq(n, 39755, 'count 1')
  o, n = ps.shard_range(10, 3, 1)
  check.eq(o, 3, 'floor(1*10/3)'); check.eq(n, 3, 'floor(2*10/3) - 3')
  local total = 0
  for i = 0, 6 do
    local off, cnt = ps.shard_range(1000003, 7, i)
    check.eq(off, total, 'tiles at ' .. i)
    total = total + cnt
  end
  check.eq(total, 1000003, 'covers P')
  check.raises(function() ps.shard_range(10, 3, 3) end, 'i must be in [0, n)')
  check.raises(function() ps.shard_range(10, 0, 0) end, 'n must be >= 1')
end)

local params = T.zeros(10)

check.case('serve misuse raises', function()
  check.raises(function() ps.serve {} end, "option 'params'")
  check.raises(function() ps.serve { params = params, idle_timout = 5 } end, "unknown option 'idle_timout'")
  check.raises(function() ps.serve { params = params, port = 'x' } end, "option 'port' must be an integer")
  check.raises(function() ps.serve { params = params, nps = 2, index = 2 } end, "option 'index' = 2 out of range")
  check.raises(function() ps.serve { params = params, workers = 2, replicas_to_aggregate = 3 } end,
               "option 'replicas_to_aggregate' = 3 out of range")
  check.raises(function() ps.serve { params = params, layout_checksum = 'xyz' } end, 'is not a hex number')
  check.raises(function() ps.serve { params = params, optimizer = { kind = 'rmsprop' } } end, 'rmsprop')
  check.raises(function() ps.serve { params = params, optimizer = { lr = 'fast' } } end, "option 'lr' must be a number")
  check.raises(function() ps.serve { params = params, log = 42 } end, "option 'log' must be a function")
  check.raises(function() ps.serve { params = T.zeros(4, 4):t() } end, 'must be contiguous')
end)

check.case('serve: a bad address is nil, err', function()
  local st, err = ps.serve { params = params, host = 'no-such-host.invalid', port = 0, handle_signals = false }
  check.eq(st, nil, 'no stats')
  check.ok(tostring(err):find('ps 0: cannot listen on no-such-host.invalid:0', 1, true), tostring(err))
end)

check.case('connect misuse raises', function()
  check.raises(function() ps.connect { P = 10 } end, "option 'addrs'")
  check.raises(function() ps.connect { addrs = { '127.0.0.1:1' } } end, "option 'P'")
  check.raises(function() ps.connect { addrs = { '127.0.0.1:1' }, P = 10, role = 'chief' } end,
               "option 'role' = 'chief'")
  check.raises(function() ps.connect { addrs = { 1 }, P = 10 } end, 'addrs[1] must be a string')
  check.raises(function() ps.connect { addrs = {}, P = 10 } end, "option 'addrs' is empty")
  check.raises(function() ps.connect { addrs = { '127.0.0.1:1' }, P = 10, token = ('x'):rep(300) } end,
               "option 'token' is 300 bytes")
end)

check.case('connect: nobody listening is nil, err naming the ps', function()
  local lines = {}
  local c, err = ps.connect { addrs = '127.0.0.1:1,127.0.0.1:1', P = 10, connect_timeout = 0.3,
                              log = function(level, msg) lines[#lines + 1] = level .. ' ' .. msg end }
  check.eq(c, nil, 'no client')
  check.ok(tostring(err):find('ps %d at 127%.0%.0%.1:1: not reachable within 0%.3 s %(connection refused%)'),
           tostring(err))
  check.ok(#lines > 0 and lines[1]:find('^info waiting for ps %d at 127%.0%.0%.1:1 %(connection refused%), retry in 0%.1 s'),
           tostring(lines[1]))
  check.raises(function() ps.connect { addrs = { 'nocolon' }, P = 10 } end, "addrs[1]: 'nocolon' is not HOST:PORT")
end)

-- The raise must not escape into the event loop: connect goes on, and the
-- ps's default logger (deploy.log and stdout) gets a warning naming the error
-- and then the line the function failed to take.
check.case('a log function that raises does not break connect, and is warned about', function()
  local dir = os.tmpname()
  os.remove(dir)
  check.ok(util.log_open(dir), 'log_open ' .. dir)
  local calls = 0
  local c, err = ps.connect { addrs = { '127.0.0.1:1' }, P = 10, connect_timeout = 0.2,
                              log = function() calls = calls + 1; error('boom') end }
  util.log_close()
  check.eq(c, nil, 'no client')
  check.ok(tostring(err):find('not reachable', 1, true), tostring(err))
  check.ok(calls > 0, 'the log function was called')
  local f = io.open(dir .. '/deploy.log')
  local text = f and f:read('a') or ''
  if f then f:close() end
  os.remove(dir .. '/deploy.log')
  os.remove(dir)
  check.ok(text:find(' %- dtf %- WARNING %- log function failed: [^\n]*test_ps%.lua:%d+: boom\n'),
           'a warning naming the error, in deploy.log: ' .. text)
  check.ok(text:find('WARNING %- log function failed: [^\n]*\n[^\n]* %- INFO %- waiting for ps 0 at 127%.0%.0%.1:1'),
           'then the line the function did not take: ' .. text)
end)

check.done()
