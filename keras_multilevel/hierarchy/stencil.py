"""Images, convolution stencils and image-shaped weights between two grids.

Haber et al. (2018, §3.1-3.2). A coarse
image ``y_H`` (pixel size ``H = 2h``) and a fine one ``y_h`` are linked by a
restriction and a prolongation (Haber et al., 2018, eq 8)::

    y_H = R y_h,        y_h ~ P y_H,

here ``R`` the average over 2x2 cells and ``P`` piecewise constant (``R P = I``)
or cell-centred bilinear interpolation. A convolution with stencil ``s_h``
(matrix ``K_h``) becomes on the coarse grid the Galerkin operator
(Haber et al., 2018, eqs 9-10)::

    K_H = R K_h P,

which is again a convolution when the stencil is the same everywhere: its
stencil ``s_H`` is the response of ``R K_h P`` to a unit impulse, computed
here with TensorFlow convolutions, never with the matrices. Going the other
way (Haber et al., 2018, §3.2), the fine stencil is the solution of the small linear system
``s_h -> s_H`` (``k^2 x k^2`` per channel pair, the same for all of them),
solved in the least-squares sense.

All images are channels last, ``(batch, height, width, channels)``; stencils
are Keras ``Conv2D`` kernels ``(k, k, in, out)`` (cross-correlation).
"""

import numpy as np
import tensorflow as tf

INTERPOLATIONS = ("constant", "linear")


def _check_interpolation(interpolation):
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"`interpolation` must be one of {INTERPOLATIONS}, got {interpolation!r}.")
    return interpolation


def restrict_image(images):
    """``R``: the average of each 2x2 cell, ``(b, 2n, 2m, c) -> (b, n, m, c)`` (Haber et al., 2018, eq 8)."""
    images = tf.convert_to_tensor(images)
    height, width = images.shape[1], images.shape[2]
    if height is not None and (height % 2 or width % 2):
        raise ValueError(f"Restriction halves the grid: height and width must be even, got {height}x{width}.")
    return tf.nn.avg_pool2d(images, ksize=2, strides=2, padding="VALID")


def _double(images, axis, interpolation):
    """Doubles one spatial axis: copies (constant) or weights ``3/4, 1/4`` of the two nearest cells (linear)."""
    if interpolation == "constant":
        even = odd = images
    else:
        length = images.shape[axis]
        before = tf.gather(images, [0, *range(length - 1)], axis=axis)  # edge cell repeated
        after = tf.gather(images, [*range(1, length), length - 1], axis=axis)
        even, odd = 0.75 * images + 0.25 * before, 0.75 * images + 0.25 * after
    doubled = tf.stack([even, odd], axis=axis + 1)
    shape = tf.concat([tf.shape(images)[:axis], [2 * images.shape[axis]], tf.shape(images)[axis + 1 :]], 0)
    return tf.reshape(doubled, shape)


def prolong_image(images, interpolation="constant"):
    """``P``: ``(b, n, m, c) -> (b, 2n, 2m, c)``, piecewise constant or cell-centred bilinear.

    Bilinear interpolation weighs the two nearest coarse cell centres
    ``3/4, 1/4`` in each direction and repeats the edge cells beyond the
    boundary.
    """
    _check_interpolation(interpolation)
    images = tf.convert_to_tensor(images)
    return _double(_double(images, 1, interpolation), 2, interpolation)


def _check_stencil(stencil):
    stencil = tf.convert_to_tensor(stencil)
    if stencil.shape.rank != 4 or stencil.shape[0] != stencil.shape[1] or stencil.shape[0] % 2 == 0:
        raise ValueError(
            f"A stencil is a Conv2D kernel (k, k, in, out) with odd k, got shape {tuple(stencil.shape)}."
        )
    return stencil


def restrict_stencil(stencil, interpolation="constant"):
    """``s_H``, the stencil of ``K_H = R K_h P`` (Haber et al., 2018, eqs 9-10), for a stride-1 'same' convolution.

    Args:
        stencil: the fine kernel ``(k, k, in, out)``, ``k`` odd.
        interpolation: the prolongation ``P`` of the coarse image.

    Returns:
        The coarse kernel, of the same shape. Its response is computed on a
        coarse canvas of ``k + 4`` cells around a unit impulse and read on the
        ``k x k`` window; with constant ``P`` that window holds all of it
        (``k >= 3``), with linear ``P`` the part outside is dropped.
    """
    stencil = _check_stencil(stencil)
    k, inputs = stencil.shape[0], stencil.shape[2]
    canvas = k + 4 + (k % 2 == 0)
    centre = canvas // 2
    impulses = np.zeros((inputs, canvas, canvas, inputs), dtype=stencil.dtype.as_numpy_dtype)
    impulses[np.arange(inputs), centre, centre, np.arange(inputs)] = 1.0
    fine = tf.nn.conv2d(prolong_image(impulses, interpolation), stencil, strides=1, padding="SAME")
    response = restrict_image(fine)  # (in, canvas, canvas, out): response[j, i, l, o] = s_H[centre - i + k//2, ...]
    half = k // 2
    window = response[:, centre - half : centre + half + 1, centre - half : centre + half + 1, :]
    # Cross-correlation: out(i) = sum_a s(a) y(i + a - k//2), so an impulse at c gives s(c - i + k//2).
    return tf.transpose(tf.reverse(window, axis=[1, 2]), [1, 2, 0, 3])


def restriction_matrix(size, interpolation="constant", dtype="float64"):
    """The ``k^2 x k^2`` matrix ``G`` of ``s_h -> s_H`` for one channel pair (the same for every pair)."""
    units = np.eye(size * size, dtype=dtype).reshape(size * size, size, size)
    stencils = tf.convert_to_tensor(np.transpose(units, (1, 2, 0))[:, :, None, :])  # k, k, 1, k^2
    coarse = restrict_stencil(stencils, interpolation)  # k, k, 1, k^2
    return tf.reshape(tf.transpose(coarse[:, :, 0, :], [2, 0, 1]), (size * size, size * size)).numpy().T


def prolongation_matrix(size, interpolation="constant", dtype="float64"):
    """``G^+``, the pseudo-inverse of :func:`restriction_matrix`: the least-squares solution
    of Haber et al.'s (2018, §3.2) ``k^2 x k^2`` system, ``G G^+ = I`` where ``G`` has full rank (``k = 3``)."""
    return np.linalg.pinv(restriction_matrix(size, interpolation, "float64")).astype(dtype)


def apply_stencil_matrix(matrix, stencil):
    """Applies a ``k^2 x k^2`` matrix to every channel pair of a ``(k, k, in, out)`` stencil (graph-safe)."""
    stencil = _check_stencil(stencil)
    shape = tf.shape(stencil)
    size = stencil.shape[0]
    flat = tf.reshape(stencil, (size * size, -1))
    return tf.reshape(tf.constant(matrix, dtype=stencil.dtype) @ flat, shape)


def prolong_stencil(stencil, interpolation="constant"):
    """The fine stencil ``s_h`` whose Galerkin restriction is ``stencil`` (Haber et al., 2018, §3.2).

    Solves ``restrict_stencil(s_h) = s_H`` for every channel pair at once, a
    ``k^2 x k^2`` linear system (least squares where it is singular), so
    ``restrict_stencil(prolong_stencil(s_H)) = s_H`` whenever ``s_H`` is in
    the range of the restriction.
    """
    stencil = _check_stencil(stencil)
    return apply_stencil_matrix(prolongation_matrix(stencil.shape[0], interpolation), stencil)


def restrict_weight_image(weights, shape):
    """Dense weights on a flattened ``(h, w, c)`` feature map, to the ``(h/2, w/2, c)`` map (Jacob, 2024, §4.3).

    The rows of ``weights`` ``(h w c, units)`` are the image the layer takes a
    dot product with. Restricted as an image (the 2x2 average, Jacob, 2024, §4.3) and
    multiplied by the 4 cells each coarse cell replaces, ``W_H = P^T W_h``
    with constant ``P``, so that ``W_H . R y = W_h . y`` for an image ``y``
    constant on each 2x2 cell: the layer's output keeps its size (Jacob (2024) leaves
    the factor out, which a retrained layer absorbs and a transferred one
    does not).
    """
    images = _weight_images(weights, shape)
    coarse = 4.0 * restrict_image(images)
    return tf.reshape(coarse[0], (-1, weights.shape[-1]))


def prolong_weight_image(weights, shape, interpolation="constant"):
    """The inverse direction of :func:`restrict_weight_image`: ``W_h = P W_H / 4``, ``shape`` the coarse map's.

    With constant ``P``, ``restrict_weight_image(prolong_weight_image(W)) = W``.
    """
    images = _weight_images(weights, shape)
    fine = prolong_image(images, interpolation) / 4.0
    return tf.reshape(fine[0], (-1, weights.shape[-1]))


def _weight_images(weights, shape):
    """``(h w c, units)`` -> one image ``(1, h, w, c units)``: Keras' Flatten is row-major over ``(h, w, c)``."""
    weights = tf.convert_to_tensor(weights)
    height, width, channels = shape
    return tf.reshape(weights, (1, height, width, channels * weights.shape[-1]))
