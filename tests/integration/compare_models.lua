-- compare_models.lua A.safetensors B.safetensors: prints the largest absolute
-- difference between same-named tensors; exits 1 if the names differ.
local ckpt = require 'dtf.ckpt'
local a = assert(ckpt.load(arg[1]))
local b = assert(ckpt.load(arg[2]))
local worst, n = 0, 0
for name, ta in pairs(a) do
  local tb = b[name]
  if not tb or tb:numel() ~= ta:numel() then
    io.stderr:write('tensor ' .. name .. ' missing or of another size in ' .. arg[2] .. '\n')
    os.exit(1)
  end
  local d = (ta:contiguous():view(-1) - tb:contiguous():view(-1))
  local m = math.max(d:max(), (-d):max())
  worst = math.max(worst, m)
  n = n + 1
end
print(string.format('%d tensors, max abs difference %.3g', n, worst))
