"""How ``MultilevelOptimizer`` takes over ``model.compile`` and ``model.fit``.

A Keras optimizer only ever sees one gradient; a V-cycle needs the batch, to
evaluate gradients of the coarse models too. So, on ``import
keras_multilevel``, two methods of Keras' trainer are wrapped where they are
defined (which keeps Keras' own "is compile overridden?" checks true):

* ``Trainer.compile``: after Keras' compile, a ``MultilevelOptimizer`` is
  attached to the model; a model that cannot be coarsened fails here. If
  Keras wrapped it in a ``LossScaleOptimizer`` (a ``mixed_float16`` model),
  the wrapper is taken off again and the levels scale their losses
  themselves (:mod:`keras_multilevel.optimizers.loss_scale`).
* ``TensorFlowTrainer.train_step``: when the model's optimizer is a
  ``MultilevelOptimizer``, the step is one V-cycle
  (``optimizer.train_step(model, data)``); otherwise Keras' step runs
  unchanged.

A model class that overrides ``train_step`` itself is not wrapped; its call to
``optimizer.apply_gradients`` raises a clear error instead of silently
training on one level.
"""

import functools

import keras

try:
    from keras.src.backend.tensorflow.trainer import TensorFlowTrainer
    from keras.src.trainers.trainer import Trainer
except ImportError as error:  # Keras moved its trainer: say so rather than fail obscurely
    raise ImportError(
        f"keras_multilevel drives model.fit through Keras' trainer classes, which Keras "
        f"{keras.__version__} does not have where Keras 3.6-3.15 keeps them ({error}). "
        "Install a Keras 3 release from 3.6 on that keeps keras.src.trainers.trainer.Trainer."
    ) from error

from keras_multilevel.optimizers.multilevel import MultilevelOptimizer


def _wrap_compile(compile_method):
    @functools.wraps(compile_method)
    def compile(self, *args, **kwargs):
        compile_method(self, *args, **kwargs)
        wrapped = getattr(self.optimizer, "inner_optimizer", None)
        if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer) and isinstance(wrapped, MultilevelOptimizer):
            wrapped.take_loss_scaling(self.optimizer)
            self.optimizer = wrapped
        if isinstance(self.optimizer, MultilevelOptimizer):
            self.optimizer.attach(self)

    compile._keras_multilevel_original = compile_method
    return compile


def _wrap_train_step(train_step_method):
    @functools.wraps(train_step_method)
    def train_step(self, data):
        if isinstance(getattr(self, "optimizer", None), MultilevelOptimizer):
            return self.optimizer.train_step(self, data)
        return train_step_method(self, data)

    train_step._keras_multilevel_original = train_step_method
    return train_step


def install():
    """Wraps Keras' compile and train_step once (idempotent)."""
    if not hasattr(Trainer.compile, "_keras_multilevel_original"):
        Trainer.compile = _wrap_compile(Trainer.compile)
    if not hasattr(TensorFlowTrainer.train_step, "_keras_multilevel_original"):
        TensorFlowTrainer.train_step = _wrap_train_step(TensorFlowTrainer.train_step)
