-- The MNIST-style model a user edits: 28x28 grey images, 10 classes.
-- A model file returns its hyperparameters (they join train.lua's: --set
-- hidden=200 works, a misspelt key is refused) and a function of them that
-- builds the network; the training loop (train.lua) adds softmax
-- cross-entropy and the optimizer.
--
--   model=mlp (default): the classic 784-100-10 network (hidden=100)
--   model=cnn:           conv5x5x32, pool, conv5x5x64, pool, fc1024, fc10
local nn = require 'dtf.nn'

return {
  hyperparams = {
    { name = 'model', type = 'string', default = 'mlp', choices = { 'mlp', 'cnn' }, help = 'the network: mlp or cnn' },
    { name = 'hidden', type = 'int', default = 100, min = 1, help = 'hidden units of the mlp' },
  },

  build = function(hp)
    if hp.model == 'cnn' then
      return nn.Sequential {
        nn.View(1, 28, 28),
        nn.Conv2d(1, 32, 5, 1, 2), nn.ReLU(), nn.MaxPool2d(),   -- 32x14x14
        nn.Conv2d(32, 64, 5, 1, 2), nn.ReLU(), nn.MaxPool2d(),  -- 64x7x7
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, 1024), nn.ReLU(),
        nn.Linear(1024, 10),
      }
    end
    return nn.Sequential {
      nn.Linear(28 * 28, hp.hidden), nn.ReLU(),
      nn.Linear(hp.hidden, 10),
    }
  end,
}
