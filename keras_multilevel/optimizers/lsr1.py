"""Limited-memory SR1 curvature and its trust-region subproblem, solved exactly (Kopaničáková and Krause's (2023) level model).

Kopaničáková and Krause (2023) (written from its abstract)
gives every level of its recursive trust-region method a
quadratic model whose Hessian is a limited-memory symmetric rank-one (L-SR1)
matrix. Its full text was not available here; this module follows the
standard formulations it builds on:

* the compact representation (Byrd, Nocedal & Schnabel 1994; Nocedal &
  Wright §7.2): with the ``k <= m`` stored pairs ``S = [s_i]``,
  ``Y = [y_i]`` (columns) and ``S^T Y = L + D + U``,

      ``B = gamma I + Psi M Psi^T``,  ``Psi = Y - gamma S``,
      ``M = (D + L + L^T - gamma S^T S)^-1``,

  which satisfies the secant equations ``B s_i = y_i`` for every stored pair;
  a pair is stored only if ``|s^T (y - B s)| >= r ||s|| ||y - B s||`` (the SR1
  skip rule, N&W eq 6.26) and ``||y - B s|| > r ||y||`` (``B`` does not
  already satisfy it up to rounding), the oldest pair making room when the
  memory is full;
* the trust-region subproblem ``min g^T p + p^T B p / 2`` s.t. ``||p|| <= Delta``
  solved exactly by the orthonormal-basis method of Brust, Erway & Marcia
  ("On solving L-SR1 trust-region subproblems", 2017): the thin QR
  ``Psi = Q R`` and the eigen-decomposition ``R M R^T = U Lambda U^T`` give
  ``B = P_par (Lambda + gamma I) P_par^T + gamma P_perp P_perp^T`` with
  ``P_par = Q U``; the optimality conditions (N&W Theorem 4.1)
  ``(B + sigma I) p = -g``, ``sigma (Delta - ||p||) = 0``, ``B + sigma I`` psd,
  ``||p|| <= Delta`` are then solved in that eigenbasis: the secular equation
  ``1/||p(sigma)|| = 1/Delta`` by safeguarded Newton iterations (Moré &
  Sorensen 1983), and the hard case (``g`` orthogonal to the eigenspace of the
  smallest eigenvalue and ``||(B - lambda_min I)^+ g|| < Delta``) by adding a
  multiple of an eigenvector of ``lambda_min`` that takes ``p`` to the
  boundary (N&W §4.3).

Everything is TensorFlow on one flat vector per level (the level's variables
concatenated, see :func:`flatten`), in float64 for the small dense algebra,
so it runs inside the compiled train step. The memory has a fixed size ``m``:
unused columns are zero, which leaves ``B`` unchanged.
"""

import tensorflow as tf

SKIP_TOLERANCE = 1e-8
"""``r`` of the SR1 skip rule (N&W eq 6.26)."""

NEWTON_ITERATIONS = 60
"""Safeguarded Newton iterations on the secular equation (each halves the bracket at worst)."""


def flatten(tensors):
    """One float64 vector from a list of tensors (a level's variables or gradients)."""
    return tf.concat([tf.reshape(tf.cast(t, tf.float64), [-1]) for t in tensors], axis=0)


def unflatten(vector, like):
    """Splits ``vector`` into tensors shaped and typed as ``like`` (the inverse of :func:`flatten`)."""
    parts = tf.split(vector, [t.shape.num_elements() for t in like])
    return [tf.cast(tf.reshape(part, t.shape), t.dtype) for part, t in zip(parts, like)]


def compact_form(s, y, used, gamma):
    """``(Psi, M)`` of ``B = gamma I + Psi M Psi^T`` from pair matrices ``s``, ``y`` (``n x m``, columns).

    ``used``: a vector of length ``m``, 1 for a stored pair and 0 else; unused columns give zero columns
    of ``Psi`` and an identity block of ``M^-1``, so they do not change ``B``.
    """
    mask = used
    s = s * mask
    y = y * mask
    psi = y - gamma * s
    sy = tf.matmul(s, y, transpose_a=True)
    lower = tf.linalg.band_part(sy, -1, 0)  # L + D
    middle = lower + tf.transpose(lower) - tf.linalg.diag(tf.linalg.diag_part(sy))  # D + L + L^T
    inverse = middle - gamma * tf.matmul(s, s, transpose_a=True)
    keep = mask[:, None] * mask[None, :]
    inverse = inverse * keep + tf.linalg.diag(1.0 - mask)
    # The pseudo-inverse: a matrix made singular by rounding gives no error inside a train step.
    return psi, tf.linalg.pinv(inverse)


def multiply(psi, m, gamma, v):
    """``B v`` in compact form."""
    return gamma * v + tf.linalg.matvec(psi, tf.linalg.matvec(m, tf.linalg.matvec(psi, v, transpose_a=True)))


class SecantMemory:
    """The ``m`` most recent accepted secant pairs of one level and the scaling ``gamma``.

    Holds TensorFlow variables (created by ``make_variable(shape, dtype,
    name)``, e.g. a Keras optimizer's ``add_variable``), so it lives across
    train steps and is saved with the optimizer.
    """

    def __init__(self, size, memory, make_variable, gamma=1.0, name="lsr1"):
        self.memory = memory
        self.initial_gamma = float(gamma)
        self.s = make_variable((size, memory), "float64", f"{name}_s")
        self.y = make_variable((size, memory), "float64", f"{name}_y")
        self.used = make_variable((memory,), "float64", f"{name}_used")  # 1 for a stored pair
        self.gamma = make_variable((), "float64", f"{name}_gamma")
        self.gamma.assign(self.initial_gamma)

    def compact(self):
        """``(Psi, M, gamma)`` of the current ``B``."""
        psi, m = compact_form(self.s, self.y, self.used, self.gamma)
        return psi, m, tf.identity(self.gamma)

    def update(self, s, y):
        """Stores ``(s, y)`` if the SR1 skip rule allows; returns whether it did.

        ``gamma`` becomes ``y^T y / s^T y`` of the new pair when that is
        positive and finite (the scaling of N&W §7.2), else stays. The rule
        is applied to the matrix ``B`` built from that ``gamma`` and the
        pairs already stored, so that the compact form with the new pair is
        the SR1 update of it and ``B s_i = y_i`` holds for every stored pair.
        """
        curvature = tf.reduce_sum(s * y)
        scale = tf.reduce_sum(y * y) / curvature
        gamma = tf.where((curvature > 0) & tf.math.is_finite(scale), scale, tf.identity(self.gamma))
        residual = y - multiply(*compact_form(self.s, self.y, self.used, gamma), gamma, s)
        norms = tf.norm(s) * tf.norm(residual)
        # Skipped too: a pair B already satisfies up to rounding (||y - B s|| <= r ||y||).
        store = (tf.abs(tf.reduce_sum(s * residual)) >= SKIP_TOLERANCE * norms) & (
            tf.norm(residual) > SKIP_TOLERANCE * tf.norm(y)
        )
        store = store & tf.reduce_all(tf.math.is_finite(s)) & tf.reduce_all(tf.math.is_finite(y))
        s_new = tf.concat([self.s[:, 1:], s[:, None]], axis=1)
        y_new = tf.concat([self.y[:, 1:], y[:, None]], axis=1)
        used = tf.concat([self.used[1:], tf.ones([1], tf.float64)], axis=0)
        self.s.assign(tf.where(store, s_new, self.s))
        self.y.assign(tf.where(store, y_new, self.y))
        self.used.assign(tf.where(store, used, self.used))
        self.gamma.assign(tf.where(store, gamma, self.gamma))
        return store


def subproblem(g, psi, m, gamma, radius):
    """The exact minimizer of ``g^T p + p^T B p / 2`` subject to ``||p|| <= radius`` (Brust et al.'s OBS).

    Args:
        g: the gradient, a float64 vector of length ``n``.
        psi, m, gamma: ``B = gamma I + Psi M Psi^T`` (:func:`compact_form`).
        radius: ``Delta >= 0``.

    Returns:
        ``(p, sigma)``: the step and the multiplier with ``(B + sigma I) p = -g``.
    """
    zero = tf.constant(0.0, tf.float64)
    q, r = tf.linalg.qr(psi)
    small = tf.matmul(r, tf.matmul(m, r, transpose_b=True))
    shift, u = tf.linalg.eigh(0.5 * (small + tf.transpose(small)))
    basis = tf.matmul(q, u)  # P_par: orthonormal columns
    eigenvalues = tf.concat([gamma + shift, [gamma]], axis=0)  # the last: gamma on the complement
    g_par = tf.linalg.matvec(basis, g, transpose_a=True)
    g_perp = g - tf.linalg.matvec(basis, g_par)
    # Coefficients a_j of g in the eigenbasis; the complement counts as one direction.
    a = tf.concat([g_par, [tf.norm(g_perp)]], axis=0)
    lowest = tf.reduce_min(eigenvalues)
    g_norm = tf.norm(g)
    tiny = 1e-12 * tf.maximum(g_norm, 1e-300)

    def norm_at(sigma):
        return tf.norm(a / (eigenvalues + sigma))

    # Case 1: B positive definite and the Newton step inside the region.
    interior = (lowest > 0) & (norm_at(zero) <= radius)
    # Case 3 (hard): g has no component on lambda_min's eigenspace and the
    # pseudo-inverse step at sigma = -lambda_min is inside the region.
    at_lowest = tf.abs(eigenvalues - lowest) <= 1e-10 * tf.maximum(tf.abs(lowest), 1.0)
    hard_sigma = tf.maximum(-lowest, 0.0)
    hard_denominators = tf.where(at_lowest, tf.ones_like(eigenvalues), eigenvalues + hard_sigma)
    hard_coefficients = tf.where(at_lowest, tf.zeros_like(a), a / hard_denominators)
    hard = (lowest <= 0) & tf.reduce_all(tf.abs(tf.where(at_lowest, a, tf.zeros_like(a))) <= tiny) & (
        tf.norm(hard_coefficients) <= radius
    )
    # Case 2: sigma > max(0, -lambda_min) on the boundary, by safeguarded Newton on
    # phi(sigma) = 1/||p(sigma)|| - 1/Delta (increasing and concave, Moré & Sorensen).
    low = hard_sigma
    high = low + g_norm / tf.maximum(radius, 1e-300) + 1e-300  # ||p(high)|| <= Delta

    def phi(sigma):
        denominators = eigenvalues + sigma
        norm = tf.norm(a / denominators)
        derivative = tf.reduce_sum(a**2 / denominators**3) / norm**3
        return 1.0 / norm - 1.0 / radius, derivative

    def newton(iteration, low, high, sigma):
        value, derivative = phi(sigma)
        low = tf.where(value < 0, sigma, low)
        high = tf.where(value >= 0, sigma, high)
        step = sigma - value / derivative
        inside = (step > low) & (step < high) & tf.math.is_finite(step)
        return iteration + 1, low, high, tf.where(inside, step, 0.5 * (low + high))

    _, _, _, sigma = tf.while_loop(
        lambda iteration, *_: iteration < NEWTON_ITERATIONS, newton, (0, low, high, 0.5 * (low + high))
    )
    sigma = tf.where(interior | (radius <= 0), zero, tf.where(hard, hard_sigma, sigma))
    coefficients = tf.where(hard, hard_coefficients, a / (eigenvalues + sigma))
    coefficients = tf.where(interior | hard | (radius > 0), coefficients, tf.zeros_like(coefficients))
    # p = -P_par c_par - c_perp g_perp / ||g_perp||, written without dividing by ||g_perp||.
    perp_scale = tf.where(hard, tf.where(at_lowest[-1], zero, 1.0 / hard_denominators[-1]), 1.0 / (gamma + sigma))
    perp_scale = tf.where(interior | hard | (radius > 0), perp_scale, zero)
    p = -tf.linalg.matvec(basis, coefficients[:-1]) - perp_scale * g_perp
    # The hard case: go to the boundary along an eigenvector of lambda_min.
    eigenvector = _lowest_eigenvector(basis, at_lowest)
    reach = tf.sqrt(tf.maximum(radius**2 - tf.reduce_sum(p * p), 0.0))
    p = tf.where(hard, p + reach * eigenvector, p)
    return p, sigma


def _lowest_eigenvector(basis, at_lowest):
    """A unit eigenvector of ``B`` for its smallest eigenvalue.

    In ``P_par`` when that eigenvalue is one of ``gamma + Lambda``; otherwise
    (it is ``gamma``) the coordinate vector least in the span of ``P_par``,
    projected off it.
    """
    index = tf.argmax(tf.cast(at_lowest[:-1], tf.int32))
    in_span = tf.reduce_any(at_lowest[:-1])
    rows = tf.reduce_sum(basis * basis, axis=1)
    coordinate = tf.one_hot(tf.argmin(rows), tf.shape(basis)[0], dtype=tf.float64)
    outside = coordinate - tf.linalg.matvec(basis, tf.linalg.matvec(basis, coordinate, transpose_a=True))
    outside = outside / tf.norm(outside)
    return tf.where(in_span, basis[:, index], outside)


def model_decrease(g, p, psi, m, gamma):
    """``-(g^T p + p^T B p / 2)``: the reduction the quadratic model predicts for step ``p``."""
    return -(tf.reduce_sum(g * p) + 0.5 * tf.reduce_sum(p * multiply(psi, m, gamma, p)))
