-- dtf.json: a small strict JSON decoder (and encoder for flat values), for
-- TF_CONFIG and DTF_CLUSTER. decode(s) -> value | nil, err.
local json = {}

local escapes = { ['"'] = '"', ['\\'] = '\\', ['/'] = '/', b = '\b', f = '\f',
                  n = '\n', r = '\r', t = '\t' }

local function decoder(s)
  local pos = 1
  local function fail(what)
    error({ json = true, msg = string.format("%s at byte %d", what, pos) })
  end
  local function skip()
    pos = s:find('[^ \t\r\n]', pos) or #s + 1
  end
  local value
  local function str()
    pos = pos + 1
    local out = {}
    while true do
      local c = s:sub(pos, pos)
      if c == '' then fail('unterminated string') end
      if c == '"' then pos = pos + 1; return table.concat(out) end
      if c == '\\' then
        local e = s:sub(pos + 1, pos + 1)
        if e == 'u' then
          local hex = s:sub(pos + 2, pos + 5)
          if not hex:match('^%x%x%x%x$') then fail('bad \\u escape') end
          out[#out + 1] = utf8.char(tonumber(hex, 16))
          pos = pos + 6
        elseif escapes[e] then
          out[#out + 1] = escapes[e]
          pos = pos + 2
        else
          fail('bad escape')
        end
      elseif c:byte() < 32 then
        fail('control character in string')
      else
        out[#out + 1] = c
        pos = pos + 1
      end
    end
  end
  function value()
    skip()
    local c = s:sub(pos, pos)
    if c == '{' then
      pos = pos + 1
      local t = {}
      skip()
      if s:sub(pos, pos) == '}' then pos = pos + 1; return t end
      while true do
        skip()
        if s:sub(pos, pos) ~= '"' then fail('expected a string key') end
        local k = str()
        skip()
        if s:sub(pos, pos) ~= ':' then fail("expected ':'") end
        pos = pos + 1
        t[k] = value()
        skip()
        local d = s:sub(pos, pos)
        pos = pos + 1
        if d == '}' then return t end
        if d ~= ',' then pos = pos - 1; fail("expected ',' or '}'") end
      end
    elseif c == '[' then
      pos = pos + 1
      local t = {}
      skip()
      if s:sub(pos, pos) == ']' then pos = pos + 1; return t end
      while true do
        t[#t + 1] = value()
        skip()
        local d = s:sub(pos, pos)
        pos = pos + 1
        if d == ']' then return t end
        if d ~= ',' then pos = pos - 1; fail("expected ',' or ']'") end
      end
    elseif c == '"' then
      return str()
    elseif s:find('^true', pos) then pos = pos + 4; return true
    elseif s:find('^false', pos) then pos = pos + 5; return false
    elseif s:find('^null', pos) then pos = pos + 4; return json.null
    else
      local num = s:match('^-?%d+%.?%d*[eE]?[-+]?%d*', pos)
      if not num or num == '' or not tonumber(num) then fail('unexpected character') end
      pos = pos + #num
      return math.tointeger(tonumber(num)) or tonumber(num)
    end
  end
  return function()
    local v = value()
    skip()
    if pos <= #s then fail('trailing characters') end
    return v
  end
end

json.null = setmetatable({}, { __tostring = function() return 'null' end })

function json.decode(s)
  if type(s) ~= 'string' then return nil, 'not a string' end
  local ok, v = pcall(decoder(s))
  if ok then return v end
  if type(v) == 'table' and v.json then return nil, v.msg end
  error(v, 0)
end

local function encode(v, out)
  local t = type(v)
  if t == 'table' then
    if #v > 0 or next(v) == nil then
      out[#out + 1] = '['
      for i, x in ipairs(v) do
        if i > 1 then out[#out + 1] = ',' end
        encode(x, out)
      end
      out[#out + 1] = ']'
    else
      local keys = {}
      for k in pairs(v) do keys[#keys + 1] = tostring(k) end
      table.sort(keys)
      out[#out + 1] = '{'
      for i, k in ipairs(keys) do
        if i > 1 then out[#out + 1] = ',' end
        encode(k, out)
        out[#out + 1] = ':'
        encode(v[k], out)
      end
      out[#out + 1] = '}'
    end
  elseif t == 'string' then
    out[#out + 1] = '"' .. v:gsub('[%c"\\]', function(c)
      return string.format('\\u%04x', c:byte())
    end) .. '"'
  elseif t == 'number' or t == 'boolean' then
    out[#out + 1] = tostring(v)
  else
    out[#out + 1] = 'null'
  end
end

function json.encode(v)
  local out = {}
  encode(v, out)
  return table.concat(out)
end

return json
