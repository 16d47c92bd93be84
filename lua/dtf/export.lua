-- dtf export CKPT_DIR OUT.safetensors (called by main.c)
local checkpoint = require 'dtf.checkpoint'
return function(dir, out)
  local ok, n, steps = pcall(checkpoint.export, dir, out)
  -- its errors name the directory or the file and say what is wrong: one
  -- line and exit 1, as every other command's, not a Lua traceback
  if not ok then require('dtf').fail('%s', tostring(n)) end
  print(string.format('dtf export: wrote %d tensors to %s (%s)', n, out, steps))
end
