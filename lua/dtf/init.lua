-- dtf: the Lua library. `require 'dtf'` gives every module at once.
local dtf = {}

-- A usage error: the host prints the message without a traceback and exits
-- with status 2 (bad flags, bad --set values, a cluster spec that cannot be
-- resolved).
local function raise(exit, fmt, ...)
  local msg = select('#', ...) > 0 and string.format(fmt, ...) or fmt
  error(setmetatable({ exit = exit, usage = exit == 2, msg = msg },
                     { __tostring = function(e) return e.msg end }), 0)
end

function dtf.usage_error(fmt, ...) raise(2, fmt, ...) end

-- An expected runtime failure (a missing file, a ps that cannot be reached,
-- a port in use, a wrong token): one line naming the thing and what to do,
-- exit status 1, no traceback. A traceback is for errors inside scripts.
function dtf.fail(fmt, ...) raise(1, fmt, ...) end

-- Stopped by a signal (util.stop_signal's number): one line, exit 128 + sig.
function dtf.stopped(sig, fmt, ...) raise(128 + sig, fmt, ...) end

setmetatable(dtf, { __index = function(t, k)
  local ok, mod = pcall(require, 'dtf.' .. k)
  if ok then rawset(t, k, mod); return mod end
  return nil
end })

return dtf
