"""Interpolation in time between two depths of a residual stack.

A stack of ``K`` blocks samples the control ``theta(t)`` at the left end
points ``t_k = k h`` (Gaedke-Merzhäuser et al., 2021, eq 8). The coarser stack of ``K/2`` blocks
samples it at ``t_j = 2 j h``: coarse block ``j`` sits on fine block ``2j``,
and fine block ``2j + 1`` lies half-way between coarse blocks ``j`` and
``j + 1``. Each operator acts on the leading (block) axis of a stacked array
and leaves the other axes alone:

* ``prolong``  ``P``: coarse -> fine, piecewise constant (Gaedke-Merzhäuser et al., 2021, §3, ``I``) or
  linear (Jacob, 2024, §4.2).
* ``restrict_gradient`` ``R = P^T``: fine -> coarse. It is the chain rule of
  ``theta = P theta_c``: ``d/d theta_c L(P theta_c) = P^T grad L``, so a coarse
  block receives the *sum* of the gradients of the fine blocks it stands for
  (Gaedke-Merzhäuser et al., 2021, §3: ``R = I^T``).
* ``restrict`` ``Pi = (P^T P)^{-1} P^T``: the restriction of iterates. It is
  the least-squares inverse of ``P``, so ``Pi P = identity`` exactly (a
  coarse network prolongated and restricted back is unchanged). For piecewise
  constant ``P`` it is the average of two fine blocks, ``P^T / 2`` (Jacob, 2024, §4.2);
  for linear ``P`` it is a tridiagonal solve.
"""

import numpy as np
import tensorflow as tf


class TimeInterpolation:
    """Base class of the operators between ``2 K_c`` and ``K_c`` blocks."""

    name = None

    def prolong(self, coarse):
        raise NotImplementedError

    def restrict_gradient(self, fine):
        raise NotImplementedError

    def restrict(self, fine):
        raise NotImplementedError

    def __repr__(self):
        return f"{self.__class__.__name__}()"


def _stacked_shape(leading, tensor):
    """``leading`` followed by the shape of one block of the stacked ``tensor``: a constant where the block's
    shape is static (one node in the graph, not the ops that read it at run time)."""
    block = tf.TensorShape(tensor.shape)[1:]
    if block.is_fully_defined():
        return [*leading, *block.as_list()]
    return tf.concat([leading, tf.shape(tensor)[1:]], axis=0)


def _pairs(fine):
    """Splits a stacked ``(2 K_c, ...)`` tensor into its even and odd blocks."""
    fine = tf.convert_to_tensor(fine)
    if fine.shape[0] is not None and fine.shape[0] % 2:
        raise ValueError(f"A fine stack needs an even number of blocks, got {fine.shape[0]}.")
    return tf.unstack(tf.reshape(fine, _stacked_shape([-1, 2], fine)), num=2, axis=1)


def _interleave(even, odd):
    """Inverse of :func:`_pairs`: ``(K_c, ...)`` twice -> ``(2 K_c, ...)``."""
    return tf.reshape(tf.stack([even, odd], axis=1), _stacked_shape([-1], even))


class PiecewiseConstant(TimeInterpolation):
    """``P``: fine blocks ``2j`` and ``2j+1`` both copy coarse block ``j`` (Gaedke-Merzhäuser et al., 2021, §3)."""

    name = "constant"

    def prolong(self, coarse):
        return _interleave(coarse, coarse)

    def restrict_gradient(self, fine):
        even, odd = _pairs(fine)
        return even + odd

    def restrict(self, fine):
        even, odd = _pairs(fine)
        return 0.5 * (even + odd)


class Linear(TimeInterpolation):
    """``P``: linear interpolation in time between coarse blocks (Jacob, 2024, §4.2).

    Fine block ``2j`` copies coarse block ``j``; fine block ``2j + 1`` is the
    mean of coarse blocks ``j`` and ``j + 1``; the last fine block, beyond the
    last coarse time point, copies the last coarse block (constant
    extrapolation, the control is not defined past ``T``).
    """

    name = "linear"

    def prolong(self, coarse):
        coarse = tf.convert_to_tensor(coarse)
        following = tf.concat([coarse[1:], coarse[-1:]], axis=0)
        return _interleave(coarse, 0.5 * (coarse + following))

    def restrict_gradient(self, fine):
        even, odd = _pairs(fine)
        # Odd fine block j feeds coarse blocks j and j + 1 with weight 1/2;
        # the last one feeds the last coarse block with weight 1.
        from_previous = tf.concat([tf.zeros_like(odd[:1]), odd[:-1]], axis=0)
        last = tf.concat([tf.zeros_like(odd[:-1]), odd[-1:]], axis=0)
        return even + 0.5 * (odd + from_previous + last)

    @staticmethod
    def normal_matrix_diagonals(coarse_blocks):
        """The three diagonals of the tridiagonal ``P^T P`` (compact format).

        Rows ``(super, main, sub)`` as ``tf.linalg.tridiagonal_solve`` wants
        them. Entry ``(j, j)`` sums the squared weights of column ``j`` of
        ``P``; neighbours share one fine block with weights ``1/2 * 1/2``.
        """
        if coarse_blocks == 1:
            return np.array([[0.0], [2.0], [0.0]])
        main = np.full(coarse_blocks, 1.5)
        main[0] = 1.25
        main[-1] = 2.25
        off = np.full(coarse_blocks, 0.25)
        super_diagonal = off.copy()
        super_diagonal[-1] = 0.0
        sub_diagonal = off.copy()
        sub_diagonal[0] = 0.0
        return np.stack([super_diagonal, main, sub_diagonal])

    def restrict(self, fine):
        rhs = self.restrict_gradient(fine)
        coarse_blocks = rhs.shape[0]
        diagonals = tf.constant(self.normal_matrix_diagonals(coarse_blocks), dtype=rhs.dtype)
        flat = tf.reshape(rhs, [coarse_blocks, -1])
        solved = tf.linalg.tridiagonal_solve(diagonals, flat, partial_pivoting=False)
        return tf.reshape(solved, tf.shape(rhs))


INTERPOLATIONS = {cls.name: cls for cls in (PiecewiseConstant, Linear)}


def get_interpolation(name):
    """Returns the :class:`TimeInterpolation` called ``name`` ("constant" or "linear")."""
    if isinstance(name, TimeInterpolation):
        return name
    if name not in INTERPOLATIONS:
        raise ValueError(
            f"Unknown interpolation {name!r}: choose one of {sorted(INTERPOLATIONS)}."
        )
    return INTERPOLATIONS[name]()
