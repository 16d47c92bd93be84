-- dtf: the Lua library. `require 'dtf'` gives every module at once.
local dtf = {}

-- A usage error: the host prints the message without a traceback and exits
-- with status 2 (bad flags, bad --set values, a cluster spec that cannot be
-- resolved).
function dtf.usage_error(fmt, ...)
  local msg = select('#', ...) > 0 and string.format(fmt, ...) or fmt
  error(setmetatable({ usage = true, msg = msg },
                     { __tostring = function(e) return e.msg end }), 0)
end

setmetatable(dtf, { __index = function(t, k)
  local ok, mod = pcall(require, 'dtf.' .. k)
  if ok then rawset(t, k, mod); return mod end
  return nil
end })

return dtf
