"""How a model is coarsened: levels, transfer operators, coarsening strategies."""

from keras_multilevel.hierarchy.coarsening import Coarsening
from keras_multilevel.hierarchy.depth import DepthCoarsening
from keras_multilevel.hierarchy.hierarchy import Hierarchy, Level, get_coarsening
from keras_multilevel.hierarchy.pyramid import PyramidCoarsening, PyramidTransfer
from keras_multilevel.hierarchy.interpolation import Linear, PiecewiseConstant, TimeInterpolation
from keras_multilevel.hierarchy.regrid import at_resolution
from keras_multilevel.hierarchy.resolution import ResolutionCoarsening, ResolutionTransfer
from keras_multilevel.hierarchy.transfer import Identity, Transfer
from keras_multilevel.hierarchy.width import WidthCoarsening, WidthTransfer
