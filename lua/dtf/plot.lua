-- dtf.plot: `dtf plot LOGDIR [-o FILE.svg]`. Reads every TensorBoard event
-- file under LOGDIR (LOGDIR/tensorboard/TASK/events.out.tfevents.*, or any
-- directory holding such files) and draws one SVG: loss, accuracy and the
-- ps tasks' updates per second against the global step, one line per task,
-- with axes, ticks, labels and a legend.
local tfevents = require 'dtf.tfevents'

local plot = {}

local COLORS = { '#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b',
                 '#e377c2', '#7f7f7f', '#bcbd22', '#17becf' }

local function esc(s)
  return (tostring(s):gsub('[&<>"]', { ['&'] = '&amp;', ['<'] = '&lt;', ['>'] = '&gt;', ['"'] = '&quot;' }))
end

-- The task a file belongs to: its directory under LOGDIR less the
-- tensorboard folder (worker0, ps1), or the directory's name
-- (runA/worker0 when LOGDIR holds several logdirs: runs side by side).
local function task_of(root, path)
  local dir = path:match('^(.*)/[^/]*$') or '.'
  local rel = ('/' .. dir:sub(#root + 2) .. '/'):gsub('/tensorboard/', '/'):gsub('^/+', ''):gsub('/+$', '')
  if rel == '' then rel = dir:match('([^/]+)$') or dir end
  return rel
end

-- series[task][tag] = { steps = {...}, values = {...} }, merged over the
-- task's files (a restarted task writes a new one) and sorted by step.
function plot.load(root)
  root = root:gsub('/+$', '')
  local files, err = tfevents.list(root)
  if not files then return nil, err end
  if #files == 0 then return nil, string.format('no TensorBoard event files under %s', root) end
  local series, warnings, points = {}, {}, 0
  for _, path in ipairs(files) do
    local tags, terr = tfevents.read(path)
    if not tags then
      warnings[#warnings + 1] = terr
    else
      local task = task_of(root, path)
      series[task] = series[task] or {}
      for tag, s in pairs(tags) do
        local into = series[task][tag] or { pairs = {} }
        series[task][tag] = into
        for i = 1, #s.steps do into.pairs[#into.pairs + 1] = { s.steps[i], s.values[i] } end
      end
    end
  end
  for _, tags in pairs(series) do
    for _, s in pairs(tags) do
      table.sort(s.pairs, function(a, b) return a[1] < b[1] end)
      s.steps, s.values = {}, {}
      for i, p in ipairs(s.pairs) do
        s.steps[i], s.values[i] = p[1], p[2]
        points = points + 1
      end
      s.pairs = nil
    end
  end
  return series, warnings, points
end

-- Ticks for [lo, hi]: about n round values (1, 2 or 5 times a power of ten).
function plot.ticks(lo, hi, n)
  if hi <= lo then hi = lo + 1 end
  local raw = (hi - lo) / (n or 5)
  local mag = 10 ^ math.floor(math.log(raw, 10))
  local step = mag
  for _, m in ipairs { 1, 2, 5, 10 } do
    step = m * mag
    if step >= raw then break end
  end
  local out = {}
  local v = math.ceil(lo / step - 1e-9) * step
  while v <= hi + step * 1e-9 do
    out[#out + 1] = math.abs(v) < step * 1e-9 and 0 or v
    v = v + step
  end
  return out, step
end

local function fmt(v, step)
  if step >= 1 and math.abs(v) < 1e15 then return string.format('%d', math.floor(v + 0.5)) end
  local decimals = math.max(0, math.ceil(-math.log(step, 10) - 1e-9))
  return string.format('%.' .. decimals .. 'f', v)
end

-- The lines one panel draws: { {label, color, steps, values, dashed}, ... }
local function panel_lines(series, tasks, wanted, color_of)
  local lines = {}
  for _, task in ipairs(tasks) do
    for _, w in ipairs(wanted) do
      local s = series[task][w.tag]
      if s and #s.steps > 0 then
        lines[#lines + 1] = { label = task .. ' ' .. w.tag, color = color_of[task], steps = s.steps,
                              values = s.values, dashed = w.dashed }
      end
    end
  end
  return lines
end

local function bounds(lines)
  local x0, x1, y0, y1 = math.huge, -math.huge, math.huge, -math.huge
  for _, l in ipairs(lines) do
    for i = 1, #l.steps do
      local v = l.values[i]
      if v == v and v > -math.huge and v < math.huge then
        x0, x1 = math.min(x0, l.steps[i]), math.max(x1, l.steps[i])
        y0, y1 = math.min(y0, v), math.max(y1, v)
      end
    end
  end
  if x0 > x1 then return nil end
  if y0 == y1 then y0, y1 = y0 - 0.5, y1 + 0.5 end
  if x0 == x1 then x0, x1 = x0 - 1, x1 + 1 end
  local pad = (y1 - y0) * 0.05
  return x0, x1, y0 - pad, y1 + pad
end

local W, PH, ML, MR, MT, MB = 1000, 300, 80, 290, 40, 50

-- xr: the step range every panel shares, so that they line up.
local function draw_panel(out, top, title, ylabel, lines, xr)
  local pw, ph = W - ML - MR, PH - MT - MB
  local x, y = ML, top + MT
  out[#out + 1] = string.format('<text x="%d" y="%d" font-size="16" font-weight="bold">%s</text>',
                                ML, top + 24, esc(title))
  out[#out + 1] = string.format('<rect x="%d" y="%d" width="%d" height="%d" fill="#ffffff" stroke="#333333"/>',
                                x, y, pw, ph)
  local x0, x1, y0, y1 = bounds(lines)
  if x0 then x0, x1 = xr[1], xr[2] end
  if not x0 then
    out[#out + 1] = string.format('<text x="%d" y="%d" font-size="14" fill="#777777" text-anchor="middle">no data</text>',
                                  x + pw // 2, y + ph // 2)
    return
  end
  local function px(v) return x + (v - x0) / (x1 - x0) * pw end
  local function py(v) return y + ph - (v - y0) / (y1 - y0) * ph end
  local xt, xs = plot.ticks(x0, x1, 8)
  for _, t in ipairs(xt) do
    out[#out + 1] = string.format('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#dddddd"/>', px(t), y, px(t), y + ph)
    out[#out + 1] = string.format('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#333333"/>', px(t), y + ph, px(t), y + ph + 5)
    out[#out + 1] = string.format('<text x="%.1f" y="%d" font-size="12" text-anchor="middle">%s</text>',
                                  px(t), y + ph + 19, fmt(t, xs))
  end
  local yt, ys = plot.ticks(y0, y1, 5)
  for _, t in ipairs(yt) do
    out[#out + 1] = string.format('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#dddddd"/>', x, py(t), x + pw, py(t))
    out[#out + 1] = string.format('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#333333"/>', x - 5, py(t), x, py(t))
    out[#out + 1] = string.format('<text x="%d" y="%.1f" font-size="12" text-anchor="end">%s</text>',
                                  x - 8, py(t) + 4, fmt(t, ys))
  end
  out[#out + 1] = string.format('<text x="%d" y="%d" font-size="13" text-anchor="middle">global step</text>',
                                x + pw // 2, y + ph + 38)
  out[#out + 1] = string.format('<text x="%d" y="%d" font-size="13" text-anchor="middle" transform="rotate(-90 %d %d)">%s</text>',
                                22, y + ph // 2, 22, y + ph // 2, esc(ylabel))
  for i, l in ipairs(lines) do
    local pts = {}
    for k = 1, #l.steps do
      local v = l.values[k]
      if v == v and v > -math.huge and v < math.huge then
        pts[#pts + 1] = string.format('%.1f,%.1f', px(l.steps[k]), py(v))
      end
    end
    local dash = l.dashed and ' stroke-dasharray="6 4"' or ''
    if #pts == 1 then
      local cx, cy = pts[1]:match('^([^,]+),(.+)$')
      out[#out + 1] = string.format('<circle cx="%s" cy="%s" r="4" fill="%s"/>', cx, cy, l.color)
    else
      out[#out + 1] = string.format('<polyline fill="none" stroke="%s" stroke-width="2"%s points="%s"/>',
                                    l.color, dash, table.concat(pts, ' '))
    end
    -- legend, right of the panel
    local ly = y + 10 + (i - 1) * 20
    out[#out + 1] = string.format('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="3"%s/>',
                                  x + pw + 15, ly, x + pw + 40, ly, l.color, dash)
    out[#out + 1] = string.format('<text x="%d" y="%d" font-size="12">%s</text>', x + pw + 46, ly + 4, esc(l.label))
  end
end

-- The SVG text for series (plot.load's), titled with title.
function plot.svg(series, title)
  local tasks = {}
  for task in pairs(series) do tasks[#tasks + 1] = task end
  table.sort(tasks)
  local color_of = {}
  for i, t in ipairs(tasks) do color_of[t] = COLORS[(i - 1) % #COLORS + 1] end
  local panels = {
    { 'Loss', 'loss', { { tag = 'train/loss' }, { tag = 'eval/loss', dashed = true } } },
    { 'Accuracy', 'accuracy', { { tag = 'eval/accuracy' } } },
  }
  local ps = panel_lines(series, tasks, { { tag = 'ps/updates_per_second' } }, color_of)
  if #ps > 0 then panels[#panels + 1] = { 'ps updates per second', 'updates/s', { { tag = 'ps/updates_per_second' } } } end
  local all, drawn = {}, {}
  for i, p in ipairs(panels) do
    drawn[i] = panel_lines(series, tasks, p[3], color_of)
    for _, l in ipairs(drawn[i]) do all[#all + 1] = l end
  end
  local x0, x1 = bounds(all)
  local height = 50 + #panels * PH
  local out = {
    '<?xml version="1.0" encoding="UTF-8"?>',
    string.format('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif">',
                  W, height, W, height),
    string.format('<rect width="%d" height="%d" fill="#fafafa"/>', W, height),
    string.format('<text x="%d" y="30" font-size="18">%s</text>', ML, esc(title)),
  }
  for i, p in ipairs(panels) do
    draw_panel(out, 50 + (i - 1) * PH, p[1], p[2], drawn[i], { x0, x1 })
  end
  out[#out + 1] = '</svg>'
  return table.concat(out, '\n') .. '\n'
end

-- A failure the user can act on: the host prints it without a traceback
-- (an error object with __tostring) and exits 1.
local function fail(msg)
  error(setmetatable({ msg = msg }, { __tostring = function(e) return e.msg end }), 0)
end

-- dtf plot: writes the SVG to out (default LOGDIR/plot.svg).
return setmetatable(plot, { __call = function(_, logdir, out)
  local series, warnings, points = plot.load(logdir)
  if not series then fail(warnings) end
  for _, w in ipairs(warnings) do io.stderr:write('dtf plot: skipping ', w, '\n') end
  if points == 0 then fail(string.format('no scalars in the event files under %s', logdir)) end
  out = out or (logdir:gsub('/+$', '') .. '/plot.svg')
  local f, err = io.open(out, 'w')
  if not f then fail(err) end
  f:write(plot.svg(series, 'dtf: ' .. logdir))
  local ok, werr = f:close()
  if not ok then fail(out .. ': ' .. tostring(werr)) end
  local n = 0
  for _, tags in pairs(series) do
    for _, s in pairs(tags) do
      if #s.steps > 0 then n = n + 1; break end
    end
  end
  print(string.format('wrote %s (%d task%s, %d points)', out, n, n == 1 and '' or 's', points))
end })
