-- dtf export CKPT_DIR OUT.safetensors (called by main.c)
local checkpoint = require 'dtf.checkpoint'
return function(dir, out)
  local n, steps = checkpoint.export(dir, out)
  print(string.format('dtf export: wrote %d tensors to %s (%s)', n, out, steps))
end
