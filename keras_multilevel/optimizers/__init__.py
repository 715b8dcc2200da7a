"""Multilevel optimizers and their cycles."""

from keras_multilevel.optimizers.cycle import v_cycle
from keras_multilevel.optimizers.multilevel import MultilevelOptimizer
from keras_multilevel.optimizers.objective import add_coupling, coupling_term, level_gradient
from keras_multilevel.optimizers.steps import CycleSteps, work_units
