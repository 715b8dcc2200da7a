"""Multilevel optimizers and their cycles.

Importing this package installs the Keras compile hook (:mod:`keras_multilevel._keras_hooks`), so that any
``MultilevelOptimizer`` there is can be compiled, whichever way it was imported.
"""

from keras_multilevel.optimizers.cycle import v_cycle
from keras_multilevel.optimizers.growing_batches import fit_with_growing_batches
from keras_multilevel.optimizers.mgopt import CoarseCorrection
from keras_multilevel.optimizers.mlsgd import MLSGD
from keras_multilevel.optimizers.multilevel import MultilevelOptimizer
from keras_multilevel.optimizers.objective import add_coupling, level_gradient, tau_correction
from keras_multilevel.optimizers.scheme import CycleScheme
from keras_multilevel.optimizers.solver import MultilevelSolver, StepReport
from keras_multilevel.optimizers.steps import CycleSteps, work_units
from keras_multilevel.optimizers.trust_region import TrustRegion

from keras_multilevel import _keras_hooks  # noqa: E402  (after the optimizer it hooks into Keras)

_keras_hooks.install()
