"""How ``MultilevelOptimizer`` takes over ``model.compile`` and ``model.fit``.

A Keras optimizer only ever sees one gradient; a V-cycle needs the batch, to
evaluate gradients of the coarse models too. The seam is as narrow as Keras
allows: one method of Keras' trainer is wrapped where it is defined (which
keeps Keras' own "is compile overridden?" checks true), once, when
:mod:`keras_multilevel.optimizers` is imported (by any way to a
``MultilevelOptimizer``), and acts only for models compiled with a
``MultilevelOptimizer``:

* ``Trainer.compile``: after Keras' compile, a ``MultilevelOptimizer`` is
  attached to the model (a model that cannot be coarsened fails here) and
  the model, this one model, gets the optimizer's V-cycle as its
  ``train_step`` (an attribute of the instance, which Keras' train function
  calls). Compiling it again with another optimizer takes that away. If
  Keras wrapped the optimizer in a ``LossScaleOptimizer`` (a
  ``mixed_float16`` model), the wrapper is taken off again and the levels
  scale their losses themselves (:mod:`keras_multilevel.optimizers.loss_scale`).

No other model's ``train_step`` changes. A model class that overrides
``train_step`` itself keeps it; its call to ``optimizer.apply_gradients``
raises a clear error instead of silently training on one level.

Why a wrapped method and not a public mechanism (checked in Keras 3.15's
sources): subclassing ``keras.Model`` with its own ``train_step`` or
``compile`` would work only for models of that class, and users build
functional and ``Sequential`` models; ``Optimizer.apply`` and
``apply_gradients`` receive only gradients and variables, never the batch
the coarse levels need; callbacks get logs, not the batch, and run outside
the traced train function; replacing ``model.train_step`` on the instance is
what is done, but something must do it when the model is compiled with a
``MultilevelOptimizer``, and ``compile`` has no hook for that (an optimizer
is not told which model compiles it). So ``Trainer.compile`` is wrapped.

Tested with Keras 3.15.1 / tensorflow-cpu 2.21.0 (``make test``) and with
the lowest Keras allowed, 3.8.0 with tensorflow-cpu 2.18.0
(``make test-keras-versions``, then the same files' slow tests): every seam
test passes under both, except that under a ``MirroredStrategy`` Keras 3.8
logs another epoch loss than one device does (the weights and work units are
those of one device, as under 3.15). Keras 3.6 and 3.7 are refused: they do
not scale a replica's loss for its share of the batch (keras-team/keras#20609,
in 3.8), so under a strategy with ``n`` replicas their steps are ``n`` times
too long, and two workers did not train as one device.
"""

import functools

import keras

try:
    from keras.src.backend.tensorflow.trainer import TensorFlowTrainer
    from keras.src.trainers.trainer import Trainer
except ImportError as error:  # Keras moved its trainer: say so rather than fail obscurely
    raise ImportError(
        f"keras_multilevel drives model.fit through Keras' trainer classes, which Keras "
        f"{keras.__version__} does not have where Keras 3.8-3.15 keeps them ({error}). "
        "Install a Keras 3 release from 3.8 on that keeps keras.src.trainers.trainer.Trainer."
    ) from error

from keras_multilevel.optimizers.multilevel import MultilevelOptimizer


def _wrap_compile(compile_method):
    @functools.wraps(compile_method)
    def compile(self, *args, **kwargs):
        compile_method(self, *args, **kwargs)
        self.__dict__.pop("train_step", None)  # a V-cycle step of an earlier compile
        wrapped = getattr(self.optimizer, "inner_optimizer", None)
        if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer) and isinstance(wrapped, MultilevelOptimizer):
            wrapped.take_loss_scaling(self.optimizer)
            self.optimizer = wrapped
        if isinstance(self.optimizer, MultilevelOptimizer):
            self.optimizer.attach(self)
            # Not for a coarse clone being built; a model class's own train_step stays.
            if self.optimizer.drives(self) and type(self).train_step is TensorFlowTrainer.train_step:
                self.train_step = functools.partial(self.optimizer.train_step, self)

    compile._keras_multilevel_original = compile_method
    return compile


def install():
    """Wraps Keras' compile once (idempotent)."""
    if not hasattr(Trainer.compile, "_keras_multilevel_original"):
        Trainer.compile = _wrap_compile(Trainer.compile)
