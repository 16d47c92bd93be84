-- check: the assertions Lua tests use. Each failure is counted and printed
-- with the caller's line; check.done() prints "NAME: N passed, M failed" and
-- exits non-zero if anything failed.
local check = { passed = 0, failed = 0, name = (arg and arg[0] or 'lua'):match('([^/]+)%.lua$') or 'lua' }

local function where(level)
  local info = debug.getinfo(level + 1, 'Sl')
  return info and (info.short_src .. ':' .. info.currentline) or '?'
end

-- level counts from the assertion's caller; the assertions return
-- (record(...)), in parentheses, so that it is not a tail call, which would
-- take the assertion's frame off the stack and name the wrong line.
local function record(ok, msg, level)
  if ok then
    check.passed = check.passed + 1
  else
    check.failed = check.failed + 1
    io.stderr:write(string.format('  FAIL %s: %s\n', where(level + 1), msg))
  end
  return ok
end

function check.ok(cond, msg)
  return (record(cond, msg or 'condition is false', 2))
end

function check.eq(a, b, msg)
  return (record(a == b, string.format('%s: got %s, expected %s', msg or 'eq', tostring(a), tostring(b)), 2))
end

function check.near(a, b, tol, msg)
  local ok = type(a) == 'number' and type(b) == 'number' and math.abs(a - b) <= tol
  return (record(ok, string.format('%s: got %s, expected %s (tol %g)', msg or 'near', tostring(a), tostring(b), tol), 2))
end

-- fn must raise an error whose message matches pattern (plain find).
function check.raises(fn, pattern, msg)
  local ok, err = pcall(fn)
  local text = type(err) == 'table' and (err.msg or tostring(err)) or tostring(err)
  if ok then return (record(false, (msg or 'raises') .. ': no error raised', 2)) end
  return (record(not pattern or text:find(pattern, 1, true) ~= nil,
                 string.format("%s: error '%s' does not contain '%s'", msg or 'raises', text, tostring(pattern)), 2))
end

-- Runs a named case, counting an unexpected error as a failure.
function check.case(name, fn)
  local ok, err = xpcall(fn, debug.traceback)
  if not ok then record(false, name .. ': ' .. tostring(err), 2) end
end

function check.done()
  print(string.format('%s: %d passed, %d failed', check.name, check.passed, check.failed))
  if check.failed > 0 then os.exit(1) end
end

return check
