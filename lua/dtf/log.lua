-- dtf.log: the seed's log lines ("2026-11-28 10:07:34,373 - dtf - INFO - ..."),
-- to stdout and to LOGDIR/deploy.log, written by the C host (log.c).
local util = require 'dtf.util'

local log = {}

function log.open(dir)
  local ok, err = util.log_open(dir)
  if not ok then log.warning('cannot write the log file: %s', err) end
  return ok
end

local function emit(level, to_stdout, fmt, ...)
  local msg = select('#', ...) > 0 and string.format(fmt, ...) or tostring(fmt)
  util.log(level, msg, to_stdout)
end

function log.debug(fmt, ...) emit('debug', true, fmt, ...) end
function log.info(fmt, ...) emit('info', true, fmt, ...) end
function log.warning(fmt, ...) emit('warning', true, fmt, ...) end
function log.error(fmt, ...) emit('error', true, fmt, ...) end
-- To deploy.log only: the per-step lines stdout skips when thinned by logevery.
function log.file(fmt, ...) emit('info', false, fmt, ...) end

-- A function(level, msg) for C modules (ps.serve, ps.connect) to log through.
function log.sink(level, msg) util.log(level, msg) end

return log
