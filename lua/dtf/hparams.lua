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

-- Prints the hyperparameters with their defaults and help.
function hparams.help(schema, out)
  out = out or io.stdout
  out:write('hyperparameters (--set KEY=VALUE):\n')
  for _, s in ipairs(schema) do
    local d = s.default == nil and '(none)' or tostring(s.default)
    out:write(string.format('  %-22s %-7s default %-12s %s\n', s.name, s.type, d, s.help or ''))
  end
end

-- parse(schema, cli) -> table of values. schema: list of
-- {name=, type='int'|'number'|'bool'|'string', default=, min=, choices=, help=}.
function hparams.parse(schema, cli)
  cli = cli or {}
  local hp = {}
  for _, s in ipairs(schema) do hp[s.name] = s.default end
  if cli.config then
    local chunk, err = loadfile(cli.config, 't', {})
    if not chunk then usage_error('--config %s: %s', cli.config, err) end
    local ok, t = pcall(chunk)
    if not ok then usage_error('--config %s: %s', cli.config, tostring(t)) end
    if type(t) ~= 'table' then usage_error('--config %s must return a table of hyperparameters', cli.config) end
    local keys = {}
    for k in pairs(t) do keys[#keys + 1] = tostring(k) end
    table.sort(keys)
    for _, k in ipairs(keys) do
      local spec, known = find(schema, k)
      if not spec then usage_error("--config %s: unknown hyperparameter '%s' (known: %s)", cli.config, k, known) end
      hp[k] = convert(spec, t[k], '--config ' .. cli.config)
    end
  end
  for _, kv in ipairs(cli.set or {}) do
    local k, v = kv:match('^([^=]+)=(.*)$')
    if k == 'help' then hparams.help(schema); os.exit(0) end
    local spec, known = find(schema, k)
    if not spec then usage_error("--set: unknown hyperparameter '%s' (known: %s)", tostring(k), known) end
    hp[k] = convert(spec, v, '--set')
  end
  return hp
end

return hparams
