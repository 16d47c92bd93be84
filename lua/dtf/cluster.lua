-- dtf.cluster: where this task sits in the cluster. Every source is tried in
-- a fixed order, first match wins (DESIGN.md, "Cluster spec"):
--   addresses: --ps/--workers, then $DTF_CLUSTER, then $TF_CONFIG's "cluster"
--   role:      --role, then $TF_CONFIG's task.type
--   index:     --index, then $TF_CONFIG's task.index, then
--              $JOB_COMPLETION_INDEX, then the hostname's ordinal (mnist-ps-1)
-- A task that cannot be placed gets a usage error (exit 2) naming what it read.
local json = require 'dtf.json'
local util = require 'dtf.util'
local usage_error = require('dtf').usage_error

local cluster = {}

-- Raises a usage error unless addr is HOST:PORT or [IPV6]:PORT (the C
-- parser every part of dtf uses).
local function check_address(addr, what)
  if type(addr) ~= 'string' then usage_error("%s: '%s' is not HOST:PORT", what, tostring(addr)) end
  local host, err = util.split_address(addr)
  if not host then usage_error('%s: %s', what, err) end
  return addr
end

local function split_addrs(s, what)
  local out = {}
  for item in s:gmatch('[^,%s]+') do out[#out + 1] = check_address(item, what) end
  return out
end

local function check_list(list, what)
  if type(list) ~= 'table' then usage_error('%s is not a list of HOST:PORT', what) end
  for _, a in ipairs(list) do check_address(a, what) end
  return list
end

-- getenv is a parameter so tests can resolve against a made-up environment.
function cluster.resolve(cli, getenv)
  getenv = getenv or os.getenv
  cli = cli or {}
  local spec = { ps = {}, workers = {} }

  local tf, tfsrc = nil, getenv('TF_CONFIG')
  if tfsrc and tfsrc ~= '' then
    local err
    tf, err = json.decode(tfsrc)
    if not tf or type(tf) ~= 'table' then
      usage_error('TF_CONFIG is not valid JSON: %s', err or 'not an object')
    end
  end

  -- Addresses.
  local dc = getenv('DTF_CLUSTER')
  if cli.ps or cli.workers then
    spec.ps = cli.ps and split_addrs(cli.ps, '--ps') or {}
    spec.workers = cli.workers and split_addrs(cli.workers, '--workers') or {}
    spec.source = 'flags'
  elseif dc and dc ~= '' then
    local c, err = json.decode(dc)
    if type(c) ~= 'table' then usage_error('DTF_CLUSTER is not valid JSON: %s', err or 'not an object') end
    spec.ps = check_list(c.ps or {}, 'DTF_CLUSTER ps')
    spec.workers = check_list(c.worker or c.workers or {}, 'DTF_CLUSTER worker')
    spec.source = 'DTF_CLUSTER'
  elseif tf and tf.cluster then
    spec.ps = check_list(tf.cluster.ps or {}, 'TF_CONFIG cluster.ps')
    spec.workers = check_list(tf.cluster.worker or {}, 'TF_CONFIG cluster.worker')
    spec.source = 'TF_CONFIG'
  end

  -- Role.
  local task = tf and tf.task
  if cli.role then
    spec.role, spec.role_source = cli.role, '--role'
  elseif task and task.type then
    spec.role, spec.role_source = task.type, 'TF_CONFIG task.type'
    if spec.role == 'chief' or spec.role == 'master' then spec.role = 'worker' end
    if spec.role ~= 'ps' and spec.role ~= 'worker' then
      usage_error("TF_CONFIG task.type '%s' is neither ps nor worker", tostring(task.type))
    end
  end
  if not spec.role then
    if spec.source then
      usage_error('a cluster is given (%s) but not this task\'s role: pass --role=ps or --role=worker',
                  spec.source)
    end
    return spec -- one process: no cluster
  end
  if #spec.ps == 0 then
    usage_error('role %s (from %s) needs the ps addresses: give --ps, DTF_CLUSTER or TF_CONFIG',
                spec.role, spec.role_source)
  end
  if #spec.workers == 0 then
    usage_error('role %s (from %s) needs the worker addresses: give --workers, DTF_CLUSTER or TF_CONFIG',
                spec.role, spec.role_source)
  end

  -- Index.
  local jci, host = getenv('JOB_COMPLETION_INDEX'), getenv('HOSTNAME')
  if cli.index then
    spec.index, spec.index_source = tonumber(cli.index), '--index'
  elseif task and task.index ~= nil then
    spec.index, spec.index_source = tonumber(task.index), 'TF_CONFIG task.index'
  elseif jci and jci ~= '' then
    spec.index, spec.index_source = tonumber(jci), 'JOB_COMPLETION_INDEX'
  else
    if not host or host == '' then
      local ok, util = pcall(require, 'dtf.util')
      host = ok and util.hostname and util.hostname() or nil
    end
    local ord = host and host:match('%-(%d+)$')
    if ord then spec.index, spec.index_source = tonumber(ord), "hostname '" .. host .. "'" end
  end
  if not spec.index or spec.index ~= math.floor(spec.index) or spec.index < 0 then
    usage_error('cannot find this %s task\'s index: no --index, no TF_CONFIG task.index, no '
                .. 'JOB_COMPLETION_INDEX, and the hostname %s has no ordinal', spec.role,
                host and ("'" .. host .. "'") or '(unknown)')
  end
  spec.index = math.tointeger(spec.index)
  local list = spec.role == 'ps' and spec.ps or spec.workers
  if spec.index >= #list then
    usage_error('%s index %d (from %s) is outside the %d %s task(s) listed in %s',
                spec.role, spec.index, spec.index_source, #list, spec.role, spec.source)
  end
  spec.address = list[spec.index + 1]
  return spec
end

-- The cluster's shared token: the --token-file's contents (trailing
-- whitespace dropped), else $DTF_TOKEN; nil when neither is set.
function cluster.token(cli, getenv)
  getenv = getenv or os.getenv
  if cli and cli.token_file then
    local f, err = io.open(cli.token_file)
    if not f then usage_error('--token-file: %s', err) end
    local t = f:read('a'):gsub('%s+$', '')
    f:close()
    return t
  end
  local t = getenv('DTF_TOKEN')
  return t ~= '' and t or nil
end

-- The port a ps listens on: the one in its own address.
function cluster.port(addr)
  return select(2, assert(util.split_address(addr)))
end

return cluster
