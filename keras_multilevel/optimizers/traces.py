"""A compiled V-cycle's level evaluations: each traced once, and once for all levels that differ only in sizes.

A V-cycle evaluates each level's loss or gradient several times (smoothing
steps, tau-corrections, acceptance tests). Inside the compiled train step
each evaluation is a call of a traced ``tf.function``, marked not to be
inlined, and every call uses all its outputs: TensorFlow then traces and
optimizes each function once instead of a specialized copy per call
(inlined, an 8-level cycle took several times longer to start).

Levels of a depth hierarchy are more alike than that: the same network with
``K, K/2, ...`` blocks, whose weights differ only in the length of the
residual stacks' leading axis. The finest model computes any of them once the
level's weights stand in for its own (:func:`substituted`; a residual stack
takes its time step from its kernel's length), so one function, traced with
the number of blocks left open, evaluates every level. Tracing and
TensorFlow's graph optimization (grappler works function by function) then
cost about the same for 8 levels as for 2. A coarsening says which levels may
share a function through its ``trace_key(model)`` (levels with equal keys
share; ``None`` or no such method: the level gets its own); levels with
non-trainable state (batch normalization, dropout's seeds) never share, since
only trainable weights are substituted.

Outside a ``tf.function`` (``run_eagerly=True``) the functions are called as
they are, and under several replicas each call is traced where it is made (a
sum over replicas may not sit inside a nested function).
"""

import contextlib
import functools

import keras
import tensorflow as tf

from keras_multilevel.optimizers.replicas import several_replicas

_NOT_INLINED = {"_noinline": True}


@contextlib.contextmanager
def substituted(variables, values):
    """Keras computes with ``values`` in place of ``variables``, whatever their shapes (``None``: no change).

    A :class:`keras.StatelessScope` whose mapping is filled directly: its
    constructor insists on equal shapes, the mapping itself does not. Losses
    the layers add are collected in the scope, so ``model.losses`` inside
    it are those of the substituted weights; updates of variables are kept
    in the scope and dropped (a level evaluation changes no state).
    """
    if values is None:
        yield
        return
    variables = list(variables)
    values = list(values)
    if len(variables) != len(values):
        raise ValueError(f"{len(values)} values given for {len(variables)} variables.")
    scope = keras.StatelessScope(collect_losses=True)
    for variable, value in zip(variables, values):
        scope.state_mapping[id(variable)] = tf.convert_to_tensor(value, dtype=variable.dtype)
    with scope:
        yield


def relaxed_specs(models):
    """Tensor specs of the models' trainable weights, with every size that differs between them left open."""
    specs = []
    for variables in zip(*(model.trainable_variables for model in models)):
        shapes = [tuple(variable.shape) for variable in variables]
        shape = [size if all(other[axis] == size for other in shapes) else None for axis, size in enumerate(shapes[0])]
        specs.append(tf.TensorSpec(shape, variables[0].dtype))
    return specs


def trace_groups(hierarchy):
    """Indices of the levels that share one traced function: lists of equal ``trace_key``, finest first."""
    trace_key = getattr(hierarchy.coarsening, "trace_key", None)
    groups = {}
    for index, level in enumerate(hierarchy):
        key = trace_key(level.model) if trace_key is not None else None
        if key is None or level.model.non_trainable_variables:
            key = ("own", index)
        groups.setdefault(key, []).append(index)
    return list(groups.values())


def shared_function(models, function, specs=None):
    """``function(model, values, *args)`` of any of ``models`` as one traced function ``(values, *args) -> outputs``.

    It is traced at its first call, on the first model with the weights'
    differing sizes left open (:func:`relaxed_specs`, or the given ``specs``,
    which may leave open more), so that later calls with any of the models'
    weights as ``values`` match that trace.
    """
    representative = models[0]
    specs = relaxed_specs(models) if specs is None else specs
    traced = tf.function(
        lambda values, *args: function(representative, values, *args),
        autograph=False,
        experimental_attributes=_NOT_INLINED,
    )
    state = {"traced": False}

    def concrete(*args):
        """The trace with the open sizes (made at the first call), which later calls then match."""
        state["traced"] = True
        return traced.get_concrete_function(specs, *args)

    def call(values, *args):
        if not state["traced"]:
            concrete(*args)
        return traced(list(values), *args)

    call.concrete = concrete
    return call


def _shared(models, function):
    """Calls ``function(model, values, *args)`` of every model in ``models`` through one traced function
    (:func:`shared_function`), each with the model's current weights as ``values``."""
    call = shared_function(models, function)

    def of(model, *args):
        return call([tf.convert_to_tensor(variable.value) for variable in model.trainable_variables], *args)

    return [functools.partial(of, model) for model in models]


def level_functions(hierarchy, function):
    """``function(level.model, values, *args)`` of each level, finest first, as the cycle calls it.

    ``function`` evaluates a model with the weights ``values`` standing in
    for its own (``None``: its own, see :func:`substituted`). Returns one
    callable ``(*args) -> outputs`` per level: the plain call outside a
    ``tf.function`` and under several replicas; inside one, a call of the
    traced function of its group of levels (:func:`trace_groups`), or of its own.
    """
    models = [level.model for level in hierarchy]
    if not tf.inside_function() or several_replicas():
        return [functools.partial(function, model, None) for model in models]
    calls = [None] * len(models)
    for group in trace_groups(hierarchy):
        if len(group) == 1:
            (index,) = group
            calls[index] = tf.function(
                functools.partial(function, models[index], None), autograph=False, experimental_attributes=_NOT_INLINED
            )
            continue
        for index, call in zip(group, _shared([models[index] for index in group], function)):
            calls[index] = call
    return calls
