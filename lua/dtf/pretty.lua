-- dtf.pretty: values as people read them, for the REPL (`x`, `=x`) and for
-- anyone who wants a table on one screen.
--
--   pretty.format(v [, opts]) -> string
--
-- Tables are nested, keys sorted (the array part 1..n first, as an array,
-- then numbers, strings, booleans, the rest), short ones on one line and
-- long ones one entry a line; past opts.depth a table shows its size
-- (`{...3 entries}`), past opts.items entries the rest are counted
-- (`... 12 more`), and a table met again inside itself is marked with the
-- path it was first seen at (`<cycle: top.a>`). A value with __tostring
-- (layers, datasets) prints through it, a tensor inside a table as its
-- shape. opts: depth (4), items (20 entries of one table), total (200
-- entries in all, so that package.loaded fits a few screens), width (80:
-- the line a table may fill before it breaks), strlen (80: bytes of a
-- string shown inside a table), name_of (function(v) -> a name for a
-- function, module or class, or nil).
local pretty = {}

local defaults = { depth = 4, items = 20, total = 200, width = 80, strlen = 80 }

local keywords = {}
for w in ('and break do else elseif end false for function goto if in local nil not or '
          .. 'repeat return then true until while'):gmatch('%a+') do keywords[w] = true end

local function is_ident(k)
  return type(k) == 'string' and k:match('^[%a_][%w_]*$') ~= nil and not keywords[k]
end

-- A string as a Lua literal; longer than max bytes, cut with its length.
local escapes = { ['"'] = '\\"', ['\\'] = '\\\\', ['\n'] = '\\n', ['\t'] = '\\t', ['\r'] = '\\r' }
local function quote(s, max)
  local cut = max and #s > max
  local body = (cut and s:sub(1, max) or s):gsub('[%c"\\]', function(c)
    return escapes[c] or string.format('\\%03d', c:byte())
  end)
  if cut then return string.format('"%s..." (%d bytes)', body, #s) end
  return '"' .. body .. '"'
end

local tensor_ok, T = pcall(require, 'dtf.tensor')
local function is_tensor(v) return tensor_ok and type(v) == 'userdata' and T.is_tensor(v) end

-- tostring through __tostring, which may raise: the error shows instead.
local function safe_tostring(v)
  local ok, s = pcall(tostring, v)
  if ok and type(s) == 'string' then return s end
  return string.format('<%s: __tostring failed: %s>', type(v), tostring(s))
end

local function has_tostring(v)
  local mt = getmetatable(v)
  return type(mt) == 'table' and rawget(mt, '__tostring') ~= nil
end

local function describe_function(f, opts)
  local name = opts.name_of and opts.name_of(f)
  if name then return 'function ' .. name end
  local info = debug.getinfo(f, 'S')
  if info.what == 'C' then return 'builtin function' end
  return string.format('function <%s:%d>', info.short_src, info.linedefined)
end

-- The keys of t in printing order, and n: t[1..n] is the array part.
local type_rank = { number = 1, string = 2, boolean = 3 }
local function sorted_keys(t)
  local n = 0
  while rawget(t, n + 1) ~= nil do n = n + 1 end
  local keys = {}
  local ok = pcall(function()
    for k in pairs(t) do
      if not (math.type(k) == 'integer' and k >= 1 and k <= n) then keys[#keys + 1] = k end
    end
  end)
  if not ok then -- a __pairs that raises: the raw entries
    keys = {}
    for k in next, t do
      if not (math.type(k) == 'integer' and k >= 1 and k <= n) then keys[#keys + 1] = k end
    end
  end
  -- strings in natural order (key2 before key10): digit runs compared as numbers
  local natural = {}
  for _, k in ipairs(keys) do
    if type(k) == 'string' then
      natural[k] = k:gsub('%d+', function(d) return string.rep('0', 20 - #d) .. d end)
    end
  end
  pcall(table.sort, keys, function(a, b)
    local ra, rb = type_rank[type(a)] or 4, type_rank[type(b)] or 4
    if ra ~= rb then return ra < rb end
    if ra == 1 then return a < b end
    if ra == 2 then
      if natural[a] ~= natural[b] then return natural[a] < natural[b] end
      return a < b
    end
    if ra == 3 then return not a and b end
    return tostring(a) < tostring(b)
  end)
  return keys, n
end

local render

local function key_text(k, opts)
  if is_ident(k) then return k end
  if type(k) == 'string' then return '[' .. quote(k, opts.strlen) .. ']' end
  if type(k) == 'table' then return '[' .. (has_tostring(k) and safe_tostring(k) or 'table') .. ']' end
  return '[' .. safe_tostring(k) .. ']'
end

-- The path a cycle mark shows: top.a.b, top[1], top["x y"].
local function child_path(path, k)
  if is_ident(k) then return path .. '.' .. k end
  if type(k) == 'string' then return path .. '[' .. quote(k, 20) .. ']' end
  return path .. '[' .. safe_tostring(k) .. ']'
end

local function count_entries(t)
  local n = 0
  for _ in next, t do n = n + 1 end
  return n
end

-- Lays entries (strings, perhaps multi-line) out: on one line when it fits
-- from column col, else one entry a line at indent + 2 (scalar array items
-- packed together) and the closing brace at indent.
local function layout(entries, packable, indent, col, opts, prefix)
  local one = prefix .. '{' .. table.concat(entries, ', ') .. '}'
  if not one:find('\n') and col + #one <= opts.width then return one end
  local pad = string.rep(' ', indent + 2)
  local lines, cur = {}, nil
  for i, e in ipairs(entries) do
    local sep = i < #entries and ',' or ''
    if packable[i] and cur and #cur + #e + 2 + #sep <= opts.width then
      cur = cur .. ' ' .. e .. sep
    else
      if cur then lines[#lines + 1] = cur end
      cur = pad .. e .. sep
      if not packable[i] then lines[#lines + 1] = cur; cur = nil end
    end
  end
  if cur then lines[#lines + 1] = cur end
  return prefix .. '{\n' .. table.concat(lines, '\n') .. '\n' .. string.rep(' ', indent) .. '}'
end

local function render_table(t, depth, indent, col, opts, seen, path)
  if seen[t] then return '<cycle: ' .. seen[t] .. '>' end
  local name = opts.name_of and opts.name_of(t)
  if name and depth > 1 then return '<' .. name .. '>' end
  if next(t) == nil then return (name and name .. ' ' or '') .. '{}' end
  if depth > opts.depth then
    local n = count_entries(t)
    return string.format('{...%d entr%s}', n, n == 1 and 'y' or 'ies')
  end
  seen[t] = path
  local keys, n = sorted_keys(t)
  local entries, packable, shown = {}, {}, 0
  local total = n + #keys
  local function add(text, scalar)
    opts.left = opts.left - 1
    shown = shown + 1
    entries[shown] = text
    packable[shown] = scalar
  end
  for i = 1, n do
    if shown >= opts.items or opts.left <= 0 then break end
    local v = rawget(t, i)
    local text = render(v, depth + 1, indent + 2, indent + 2, opts, seen, child_path(path, i))
    add(text, type(v) ~= 'table' and not text:find('\n'))
  end
  for _, k in ipairs(keys) do
    if shown >= opts.items or opts.left <= 0 then break end
    local ok, v = pcall(function() return t[k] end)
    if not ok then v = rawget(t, k) end
    local kt = key_text(k, opts)
    local text = render(v, depth + 1, indent + 2, indent + 2 + #kt + 3, opts, seen, child_path(path, k))
    add(kt .. ' = ' .. text, false)
  end
  if shown < total then add(string.format('... %d more', total - shown), false) end
  seen[t] = nil
  return layout(entries, packable, indent, col, opts, name and name .. ' ' or '')
end

-- v at nesting depth (1: the top), its first line starting at column col
-- of a line indented by indent.
function render(v, depth, indent, col, opts, seen, path)
  local tv = type(v)
  if tv == 'string' then return quote(v, opts.strlen) end
  if tv == 'function' then return describe_function(v, opts) end
  if is_tensor(v) then
    if depth == 1 then return safe_tostring(v) end
    return '[dtf.Tensor ' .. table.concat(v:size(), 'x') .. ']'
  end
  if has_tostring(v) then
    -- a multi-line text (a Sequential) keeps its shape, moved to indent
    return (safe_tostring(v):gsub('\n', '\n' .. string.rep(' ', indent)))
  end
  if tv == 'table' then return render_table(v, depth, indent, col, opts, seen, path) end
  return safe_tostring(v)
end

function pretty.format(v, opts)
  local o = {}
  for k, d in pairs(defaults) do o[k] = d end
  for k, x in pairs(opts or {}) do o[k] = x end
  o.left = o.total -- entries still to show, across every table
  return render(v, 1, 0, 0, o, {}, 'top')
end

return pretty
