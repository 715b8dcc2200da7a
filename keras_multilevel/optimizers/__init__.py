"""Multilevel optimizers and their cycles."""

from keras_multilevel.optimizers.cycle import v_cycle
from keras_multilevel.optimizers.growing_batches import fit_with_growing_batches
from keras_multilevel.optimizers.mgopt import CoarseCorrection
from keras_multilevel.optimizers.mlsgd import MLSGD
from keras_multilevel.optimizers.multilevel import MultilevelOptimizer, StepReport
from keras_multilevel.optimizers.objective import add_coupling, level_gradient, tau_correction
from keras_multilevel.optimizers.scheme import CycleScheme
from keras_multilevel.optimizers.solver import MultilevelSolver
from keras_multilevel.optimizers.steps import CycleSteps, work_units
from keras_multilevel.optimizers.trust_region import TrustRegion
