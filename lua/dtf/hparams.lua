-- dtf.hparams: hyperparameters declared by a script, filled from defaults,
-- then a --config file, then --set flags (helm's order: later wins). A value
-- of the wrong type, an unknown key, or a value outside its choices is a
-- usage error (exit 2) that names the key, the value and where it came from.
local usage_error = require('dtf').usage_error

local hparams = {}

local function convert(spec, raw, where)
  local t = spec.type
  local v
  if t == 'int' or t == 'number' then
    v = tonumber(raw)
    if v == nil or v ~= v then
      usage_error("%s: %s='%s' is not a number", where, spec.name, tostring(raw))
    end
    if t == 'int' then
      if v ~= math.floor(v) then usage_error("%s: %s='%s' is not an integer", where, spec.name, tostring(raw)) end
      v = math.tointeger(v)
    end
    if spec.min and v < spec.min then
      usage_error('%s: %s=%s is below its minimum %s', where, spec.name, tostring(raw), tostring(spec.min))
    end
    if spec.max and v > spec.max then
      usage_error('%s: %s=%s is above its maximum %s', where, spec.name, tostring(raw), tostring(spec.max))
    end
  elseif t == 'bool' then
    if raw == true or raw == 'true' or raw == '1' or raw == 'yes' then v = true
    elseif raw == false or raw == 'false' or raw == '0' or raw == 'no' then v = false
    else usage_error("%s: %s='%s' is not true or false", where, spec.name, tostring(raw)) end
  else
    if type(raw) ~= 'string' and type(raw) ~= 'number' then
      usage_error('%s: %s must be a string, not a %s', where, spec.name, type(raw))
    end
    v = tostring(raw)
  end
  if spec.choices then
    local ok = false
    for _, c in ipairs(spec.choices) do if c == v then ok = true end end
    if not ok then
      usage_error("%s: %s='%s' is not one of %s", where, spec.name, tostring(raw),
                  table.concat(spec.choices, ', '))
    end
  end
  return v
end

local function find(schema, key)
  for _, s in ipairs(schema) do if s.name == key then return s end end
  local names = {}
  for _, s in ipairs(schema) do names[#names + 1] = s.name end
  return nil, table.concat(names, ', ')
end

-- Prints the hyperparameters with their defaults and help; with form
-- 'json', the schema as JSON (for the chart's values.schema.json).
function hparams.help(schema, out, form)
  out = out or io.stdout
  if form == 'json' then
    local list = {}
    for i, s in ipairs(schema) do
      list[i] = { name = s.name, type = s.type, default = s.default, min = s.min, max = s.max, choices = s.choices, help = s.help }
    end
    out:write(require('dtf.json').encode(list), '\n')
    return
  end
  out:write('hyperparameters (--set KEY=VALUE):\n')
  for _, s in ipairs(schema) do
    local d = s.default == nil and '(none)' or tostring(s.default)
    out:write(string.format('  %-22s %-7s default %-12s %s\n', s.name, s.type, d, s.help or ''))
  end
end

-- The KEY=VALUE pairs of the --set flags, in order. One flag may carry
-- several, as helm's --set does: "a=1,b=2"; "\," is a comma in a value.
function hparams.pairs_of(sets)
  local out = {}
  for _, flag in ipairs(sets or {}) do
    local items, cur = {}, {}
    local i = 1
    while i <= #flag do
      local c = flag:sub(i, i)
      if c == '\\' and flag:sub(i + 1, i + 1) == ',' then
        cur[#cur + 1] = ','
        i = i + 1
      elseif c == ',' then
        items[#items + 1] = table.concat(cur)
        cur = {}
      else
        cur[#cur + 1] = c
      end
      i = i + 1
    end
    items[#items + 1] = table.concat(cur)
    for _, item in ipairs(items) do
      local k, v = item:match('^([^=]+)=(.*)$')
      if not k then usage_error("--set: '%s' in '%s' is not KEY=VALUE", item, flag) end
      out[#out + 1] = { k, v }
    end
  end
  return out
end

-- The --config file's table (keys sorted), or nil without one.
local function config_table(cli)
  if not cli.config then return nil end
  local chunk, err = loadfile(cli.config, 't', {})
  if not chunk then usage_error('--config %s: %s', cli.config, err) end
  local ok, t = pcall(chunk)
  if not ok then usage_error('--config %s: %s', cli.config, tostring(t)) end
  if type(t) ~= 'table' then usage_error('--config %s must return a table of hyperparameters', cli.config) end
  return t
end

-- The value key would have (the --set flags, then --config, then the
-- default), without checking the other keys: for what must be known before
-- the whole schema is (the model file declares hyperparameters of its own).
function hparams.peek(schema, cli, key)
  cli = cli or {}
  local spec = find(schema, key)
  local v = spec and spec.default
  local t = config_table(cli)
  if t and t[key] ~= nil then v = convert(spec, t[key], '--config ' .. cli.config) end
  for _, kv in ipairs(hparams.pairs_of(cli.set)) do
    if kv[1] == key then v = convert(spec, kv[2], '--set') end
  end
  return v
end

-- parse(schema, cli [, opts]) -> table of values. schema: list of
-- {name=, type='int'|'number'|'bool'|'string', default=, min=, max=, choices=, help=}.
-- opts.ignore_unknown: keys the schema does not know are skipped instead of
-- refused (the REPL reads the pods' whole hyperparameter file).
function hparams.parse(schema, cli, opts)
  cli = cli or {}
  opts = opts or {}
  local hp = {}
  for _, s in ipairs(schema) do hp[s.name] = s.default end
  local t = config_table(cli)
  if t then
    local keys = {}
    for k in pairs(t) do keys[#keys + 1] = tostring(k) end
    table.sort(keys)
    for _, k in ipairs(keys) do
      local spec, known = find(schema, k)
      if spec then hp[k] = convert(spec, t[k], '--config ' .. cli.config)
      elseif not opts.ignore_unknown then
        usage_error("--config %s: unknown hyperparameter '%s' (known: %s)", cli.config, k, known)
      end
    end
  end
  for _, kv in ipairs(hparams.pairs_of(cli.set)) do
    local k, v = kv[1], kv[2]
    if k == 'help' then hparams.help(schema, nil, v); os.exit(0) end
    local spec, known = find(schema, k)
    if spec then hp[k] = convert(spec, v, '--set')
    elseif not opts.ignore_unknown then
      usage_error("--set: unknown hyperparameter '%s' (known: %s)", tostring(k), known)
    end
  end
  return hp
end

return hparams
