"""SSM convolution kernels: the DPLR (S4) Cauchy route and the diagonal (S4D) Vandermonde route.

Both describe a linear time-invariant system of N/2 complex modes plus their conjugates (a real
system of state size N), per channel h:

        x_k = A_bar x_{k-1} + B_bar u_k,      y_k = 2 Re( C^* x_k )   (conjugate pair summed)

and return its real convolution kernel K[c, h, k], k = 0..L-1. All work is in float32 /
complex64 whatever the model's compute dtype. The (channels, H, N/2, L) intermediate is never
materialised for long L: the DPLR route splits its work into chunks along the frequency axis
with `lax.map` over checkpointed chunks (memory O(H·N·chunk) forward and backward alike); the
S4D route is a batched matrix product over blocks of ~sqrt(L) steps whose largest array is the
kernel itself.

Shapes (H = channels of the layer, N2 = N/2 modes, Cc = output channels, 1 or 2):
    lam: (H, N2) complex, Re < 0;  p, b: (H, N2) complex;  c: (Cc, H, N2) complex;  dt: (H,) real.
"""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

# Elements of one (H, N2, chunk) block of the kernel's float32 intermediates (2**26 elements are
# 256 MiB; forward and backward together hold a few such blocks). Larger chunks are faster on the
# CPU (a lax.map body runs its ops about 2x slower than straight-line code), so the kernel at the
# LRA widths is computed in one piece up to L = 16K (d_model 128, d_state 64) and chunked above.
CHUNK_ELEMENTS = 2**26


def _chunked(fn, positions, per_position: int):
    """Applies fn to chunks of `positions` (n, ...) along its first axis and concatenates the
    results along their last axis.

    fn(chunk) -> array (..., len(chunk)). Chunks are of equal size (the last one padded by at most
    count - 1 positions), each holding about CHUNK_ELEMENTS elements of fn's (H, N2, chunk)
    intermediates; each chunk is rematerialised in the backward pass, so only fn's inputs and
    outputs are kept.
    """
    n = positions.shape[0]
    limit = max(1, min(n, CHUNK_ELEMENTS // max(per_position, 1)))
    if limit >= n:
        return fn(jnp.asarray(positions))
    count = -(-n // limit)
    size = -(-n // count)  # equal chunks: 2049 positions by 1024 are 3 x 683, not 3 x 1024
    widths = [(0, count * size - n)] + [(0, 0)] * (positions.ndim - 1)
    padded = jnp.pad(positions, widths, mode="edge").reshape(count, size, *positions.shape[1:])
    out = jax.lax.map(jax.checkpoint(fn), padded)  # (count, ..., size)
    out = jnp.moveaxis(out, 0, -2)
    return out.reshape(*out.shape[:-2], count * size)[..., :n]


def _cmul(ar, ai, br, bi):
    """(ar + i ai)(br + i bi) as a (real, imag) pair of float32 arrays."""
    return ar * br - ai * bi, ar * bi + ai * br


def _sign(two_f: int):
    half = two_f // 2
    return jnp.concatenate([jnp.ones((half,), jnp.float32), -jnp.ones((half,), jnp.float32)])


def _q(c1, c2, basis, basis_other):
    """q = conj(z) / |z|^2 as [Re q | Im q], (H, N2, 2F): see `_cauchy_sums`."""
    c1, c2 = c1[..., None], c2[..., None]  # (H, N2, 1)
    part = basis[:, None, 0] + c1 * basis[:, None, 1] + c2 * basis[:, None, 2]  # z's own component
    other = basis_other[:, None, 0] + c1 * basis_other[:, None, 1] + c2 * basis_other[:, None, 2]
    return _sign(basis.shape[-1]) * part / (part * part + other * other)


_HIGHEST = jax.lax.Precision.HIGHEST


@jax.custom_vjp
def _cauchy_sums(weights, c1, c2, basis, basis_other):
    """s[h, r, :] = sum_n weights[h, r, n] q[h, n, :], q = 1 / z, z = b_0 + c1 b_1 + c2 b_2.

    Complex quantities along the last axis as [real | imag] halves (2F = two halves of F):
      weights: (H, R, N2) real;  c1, c2: (H, N2) real, the per-mode coefficients;
      basis: (H, 3, 2F), the complex per-frequency factors b_j as [Re | Im];  basis_other: the
        same with the halves swapped ([Im | Re]), so that z's other component costs the same.
    Returns s: (H, R, 2F) = [Re s | Im s].

    Forward: one element-wise pass over (H, N2, 2F) and one matrix product. The hand-written
    backward pass recomputes q instead of saving it and is matrix products plus two element-wise
    passes (autodiff of the broadcasting forward took twice as long and 3x the memory).
    """
    return jnp.einsum("hrn,hnf->hrf", weights, _q(c1, c2, basis, basis_other), precision=_HIGHEST)


def _cauchy_sums_fwd(weights, c1, c2, basis, basis_other):
    return _cauchy_sums(weights, c1, c2, basis, basis_other), (weights, c1, c2, basis, basis_other)


def _cauchy_sums_bwd(res, g):
    weights, c1, c2, basis, basis_other = res
    half = basis.shape[-1] // 2
    q = _q(c1, c2, basis, basis_other)  # recomputed: (H, N2, 2F)
    g_weights = jnp.einsum("hrf,hnf->hrn", g, q, precision=_HIGHEST)
    g_q = jnp.einsum("hrn,hrf->hnf", weights, g, precision=_HIGHEST)  # [dRe q | dIm q]
    # q = 1 / z is holomorphic: the cotangent of z is conj(dq/dz) g_q = conj(-q^2) g_q.
    q_re, q_im = q[..., :half], q[..., half:]
    g_re, g_im = g_q[..., :half], g_q[..., half:]
    m_re, m_im = q_im * q_im - q_re * q_re, 2.0 * q_re * q_im  # conj(-q^2)
    g_z = jnp.concatenate([m_re * g_re - m_im * g_im, m_re * g_im + m_im * g_re], axis=-1)
    # Real coefficients: dc_j = Re(conj(b_j) g_z), summed over frequencies (the [Re | Im] dot);
    # complex factors: db_j = sum_n c_j g_z (c_0 = 1).
    g_c = jnp.einsum("hnf,hjf->hnj", g_z, basis[:, 1:], precision=_HIGHEST)  # (H, N2, 2)
    # (H, 3, N2): the contracted axis last in the first operand and first in the second, the
    # product XLA's CPU backend ran 2x faster than with coef as (H, N2, 3)
    coef = jnp.stack([jnp.ones_like(c1), c1, c2], axis=1)
    g_basis = jnp.einsum("hjn,hnf->hjf", coef, g_z, precision=_HIGHEST)
    return g_weights, g_c[..., 0], g_c[..., 1], g_basis, jnp.zeros_like(basis_other)


_cauchy_sums.defvjp(_cauchy_sums_fwd, _cauchy_sums_bwd)


def dplr_kernel(lam, p, b, c, dt, length: int):
    """The S4 kernel of a DPLR system A = Lambda - P P^*, bilinear discretisation, in float32.

    C is the "C tilde" of S4: the kernel of length L is evaluated through the truncated generating
    function at the L-th roots of unity omega (Cauchy kernels plus the Woodbury identity for the
    rank-one term), then an inverse real FFT. Only the L//2 + 1 non-negative frequencies are
    evaluated (the kernel is real).

    With alpha = (2/dt)(1 - omega) and beta = 1 + omega, every Cauchy sum over a mode n and its
    conjugate partner collapses to one term with a real numerator weight:

        v / (alpha - lam beta) + conj(v) / (alpha - conj(lam) beta)
          = (2 Re(v) alpha - 2 Re(v conj(lam)) beta) * q,
        q = 1 / z,   z = alpha^2 - 2 Re(lam) alpha beta + |lam|^2 beta^2,

    so the sums over modes are real-weighted matrix products with q (one reciprocal per mode and
    frequency), and no term is infinite at omega = -1. The (H, N2, F) part is computed in real
    float32 arithmetic, q = conj(z) / |z|^2 with one real division (XLA's complex64 division and
    element-wise ops ran several times slower on the CPU); only the O(H F) remainder is complex.

    Returns: (Cc, H, length) float32.
    """
    lam, p, b, c = (x.astype(jnp.complex64) for x in (lam, p, b, c))
    channels = c.shape[0]
    two_over_dt = 2.0 / dt.astype(jnp.float32)  # (H,)
    # The Cauchy numerators, stacked: v00 = C^* B and v01 = C^* P per output channel, then
    # v10 = P^* B and v11 = P^* P.
    v = jnp.concatenate([c.conj() * b, c.conj() * p, (p.conj() * b)[None], (p.conj() * p)[None]])
    v = jnp.moveaxis(v, 0, 1)  # (H, K, N2), K = 2 Cc + 2
    n_v = v.shape[1]
    weights = jnp.concatenate([2.0 * v.real, 2.0 * (v * lam.conj()[:, None]).real], axis=1)
    # z = alpha^2 - 2 Re(lam) alpha beta + |lam|^2 beta^2 = b_0 + c1 b_1 + c2 b_2.
    c1, c2 = -2.0 * lam.real, lam.real ** 2 + lam.imag ** 2  # (H, N2)

    def at_frequencies(omega):
        n_f = omega.shape[0]
        w_re, w_im = omega[:, 0], omega[:, 1]  # (F,)
        a_re = two_over_dt[:, None] * (1.0 - w_re)  # alpha: (H, F)
        a_im = two_over_dt[:, None] * (-w_im)
        b_re, b_im = 1.0 + w_re, w_im  # beta: (F,)
        aa_re, aa_im = _cmul(a_re, a_im, a_re, a_im)  # alpha^2, (H, F)
        ab_re, ab_im = _cmul(a_re, a_im, b_re, b_im)  # alpha beta, (H, F)
        bb_re, bb_im = (jnp.broadcast_to(x, aa_re.shape) for x in _cmul(b_re, b_im, b_re, b_im))
        # [Re | Im] (and [Im | Re]) halves on the frequency axis, materialised before the
        # (H, N2, 2F) pass (optimization_barrier): fused into it, the cosines, sines and products
        # above would be recomputed at every mode.
        basis = jnp.stack([jnp.concatenate(x, -1) for x in
                           ((aa_re, aa_im), (ab_re, ab_im), (bb_re, bb_im))], 1)  # (H, 3, 2F)
        basis_other = jnp.concatenate([basis[..., n_f:], basis[..., :n_f]], -1)
        basis, basis_other = jax.lax.optimization_barrier((basis, basis_other))
        s = _cauchy_sums(weights, c1, c2, basis, basis_other)  # (H, 2K, 2F)
        s_re, s_im = s[..., :n_f], s[..., n_f:]  # (H, 2K, F)
        # The O(H K F) remainder, in real arithmetic too: s = alpha S_1 - beta S_2 (H, K, F),
        # then the Woodbury correction for the rank-one term.
        a_re, a_im = a_re[:, None], a_im[:, None]  # (H, 1, F)
        t_re, t_im = _cmul(a_re, a_im, s_re[:, :n_v], s_im[:, :n_v])
        u_re, u_im = _cmul(b_re, b_im, s_re[:, n_v:], s_im[:, n_v:])
        s_re, s_im = t_re - u_re, t_im - u_im
        # r = beta s10 / (1 + beta s11), (H, 1, F)
        n_re, n_im = _cmul(b_re, b_im, s_re[:, -2:-1], s_im[:, -2:-1])
        d_re, d_im = _cmul(b_re, b_im, s_re[:, -1:], s_im[:, -1:])
        d_re = 1.0 + d_re
        d_abs2 = d_re * d_re + d_im * d_im
        r_re, r_im = _cmul(n_re, n_im, d_re / d_abs2, -d_im / d_abs2)
        x_re, x_im = _cmul(s_re[:, channels: 2 * channels], s_im[:, channels: 2 * channels],
                           r_re, r_im)
        out_re = 2.0 * (s_re[:, :channels] - x_re)  # (H, Cc, F)
        out_im = 2.0 * (s_im[:, :channels] - x_im)
        return jnp.moveaxis(jax.lax.complex(out_re, out_im), 1, 0)  # (Cc, H, F)

    # omega = exp(-i theta) at the non-negative frequencies, (F, 2) = [Re, Im]: a constant of the
    # program (computed in float64 here), not cosines XLA would recompute in every fused pass of
    # the backward (where they were half the kernel's gradient time).
    theta = (2.0 * np.pi / length) * np.arange(length // 2 + 1)
    omega = np.stack([np.cos(theta), -np.sin(theta)], axis=-1).astype(np.float32)
    spectrum = _chunked(at_frequencies, omega, lam.shape[0] * lam.shape[1])
    return jnp.fft.irfft(spectrum, n=length, axis=-1).astype(jnp.float32)


def discretize_diag(lam, b, dt, method: str):
    """Discretises a diagonal system: returns (A_bar, B_bar), each (H, N2) complex64."""
    dta = dt.astype(jnp.float32)[:, None] * lam.astype(jnp.complex64)
    b = b.astype(jnp.complex64)
    if method == "zoh":
        a_bar = jnp.exp(dta)
        return a_bar, (a_bar - 1.0) / lam * b
    if method == "bilinear":
        denom = 1.0 - dta / 2.0
        return (1.0 + dta / 2.0) / denom, dt[:, None] * b / denom
    raise ValueError(f"discretisation must be 'zoh' or 'bilinear', got {method!r}")


def vandermonde_blocks(length: int) -> tuple:
    """(T, L/T): steps per block, ceil(sqrt(L)), and blocks of diag_kernel's matrix product."""
    steps = math.isqrt(max(length, 1) - 1) + 1
    return steps, -(-length // steps)


def diag_kernel(lam, b, c, dt, length: int, method: str = "zoh"):
    """The S4D kernel K[c, h, k] = 2 Re sum_n conj(C_n) B_bar_n A_bar_n^k (Vandermonde), float32.

    Computed as a batched matrix product: with k = T m + j (T ~ sqrt(L) steps per block),
    A^k = A^(T m) A^j, so K[c, h, T m + j] = 2 Re sum_n (W[c, h, n] A_n^(T m)) A_n^j, a product
    over the modes n of a (Cc * L/T, N2) and an (N2, T) matrix per channel h. Only
    H N2 (T + L/T) complex exponentials are taken (not H N2 L), and nothing larger than the
    kernel itself is materialised.

    Returns: (Cc, H, length) float32.
    """
    a_bar, b_bar = discretize_diag(lam, b, dt, method)
    # (H, N2); A_bar^k = exp(k log A_bar). Under ZOH log A_bar is dt * lambda itself: strongly
    # damped modes (dt |Re lambda| > ~88) underflow A_bar to 0 in float32, and log(0) * 0 at
    # k = 0 would make the whole kernel NaN.
    log_a = (dt.astype(jnp.float32)[:, None] * lam.astype(jnp.complex64) if method == "zoh"
             else jnp.log(a_bar))
    weights = c.astype(jnp.complex64).conj() * b_bar  # (Cc, H, N2)
    steps, blocks = vandermonde_blocks(length)
    inner = jnp.exp(log_a[..., None] * jnp.arange(steps, dtype=jnp.float32))  # (H, N2, T)
    outer = jnp.exp(log_a[..., None] * (steps * jnp.arange(blocks, dtype=jnp.float32)))
    w = weights[..., None] * outer  # (Cc, H, N2, L/T)
    real = (jnp.einsum("chnm,hnt->chmt", w.real, inner.real)
            - jnp.einsum("chnm,hnt->chmt", w.imag, inner.imag))  # (Cc, H, L/T, T)
    return 2.0 * real.reshape(*real.shape[:2], blocks * steps)[..., :length]


def dplr_dense(lam, p, b):
    """The full (conjugate pairs made explicit) dense system of a DPLR parameterisation.

    Returns: A (H, N, N) complex64 = diag(Lambda_f) - P_f P_f^*, and B (H, N) complex64, with
    X_f = [X, conj X] along the mode axis.
    """
    full = lambda x: jnp.concatenate([x, x.conj()], axis=-1).astype(jnp.complex64)
    lam_f, p_f, b_f = full(lam), full(p), full(b)
    a = jax.vmap(jnp.diag)(lam_f) - p_f[:, :, None] * p_f.conj()[:, None, :]
    return a, b_f


def solve(m, rhs):
    """m^{-1} rhs for batches of small square systems: m (..., n, n), rhs (..., n, k) -> (..., n, k).

    Gauss-Jordan elimination with partial pivoting in plain XLA ops (a fori_loop over the n
    columns), not jnp.linalg: on the CPU each jnp.linalg call is a LAPACK custom call that waits
    on XLA's intra-op thread pool, and a program with more such calls able to run at once than
    the pool has threads (the recurrent views of three S4 layers on a 2-core machine) deadlocks.
    For the few (H, N, N) systems of the recurrent view (N = d_state) the loop costs little.
    """
    n = m.shape[-1]
    aug = jnp.concatenate([m, rhs.astype(m.dtype)], axis=-1)  # (..., n, n + k)
    rows = jnp.arange(n)

    def eliminate(j, aug):
        column = jax.lax.dynamic_index_in_dim(aug, j, axis=-1, keepdims=False)  # (..., n)
        size = jnp.where(rows >= j, jnp.abs(column), -1.0)
        pivot = jnp.argmax(size, axis=-1)  # (...,) the largest remaining entry of column j
        row_j = jax.lax.dynamic_index_in_dim(aug, j, axis=-2, keepdims=True)  # (..., 1, n + k)
        row_p = jnp.take_along_axis(aug, pivot[..., None, None], axis=-2)
        swap = (rows == j).astype(aug.dtype) - (rows == pivot[..., None]).astype(aug.dtype)
        aug = aug + swap[..., None] * (row_p - row_j)  # rows j and pivot exchanged
        row = row_p / jax.lax.dynamic_index_in_dim(row_p, j, axis=-1)  # pivot row, leading 1
        factor = jax.lax.dynamic_index_in_dim(aug, j, axis=-1)  # (..., n, 1)
        factor = jnp.where((rows == j)[:, None], 0.0, factor)
        aug = aug - factor * row
        return jnp.where((rows == j)[:, None], row, aug)

    return jax.lax.fori_loop(0, n, eliminate, aug)[..., n:]


def discretize_dense_bilinear(a, b, dt):
    """Bilinear discretisation of dense systems: A (H, N, N), B (H, N), dt (H,) -> A_bar, B_bar."""
    eye = jnp.eye(a.shape[-1], dtype=a.dtype)
    half = (dt.astype(jnp.float32) / 2.0)[:, None, None]
    rhs = jnp.concatenate([eye + half * a, b[..., None]], axis=-1)  # (H, N, N + 1)
    out = solve(eye - half * a, rhs)
    return out[..., :-1], out[..., -1] * dt[:, None]


@functools.partial(jax.jit, static_argnames=("length",))
def c_tilde_to_c_bar(a_bar, c_tilde, length: int):
    """Undoes S4's "C tilde" reparameterisation for the recurrent view.

    C_tilde^* = C_bar^* (I - A_bar^L), so C_bar = (I - A_bar^L)^{-*} C_tilde.
    a_bar: (H, N, N); c_tilde: (H, N) -> C_bar (H, N).
    """
    eye = jnp.eye(a_bar.shape[-1], dtype=a_bar.dtype)
    a_pow = jnp.linalg.matrix_power(a_bar, length)
    m = jnp.conj(jnp.swapaxes(eye - a_pow, -1, -2))
    return solve(m, c_tilde[..., None])[..., 0]


def _lower_toeplitz(k):
    """k (..., T) -> M (..., T, T), M[i, j] = k[i - j] for i >= j, else 0.

    By slicing, not gathering (whose gradient, a scatter-add of T^2 elements per channel, was
    most of the chunked layer's time on the CPU): w = [k_0, 0 (T times), k_{T-1}, ..., k_1] of
    length 2T tiled T times and read in rows of 2T - 1 puts w[(j - i) mod 2T] at (i, j).
    """
    steps = k.shape[-1]
    zeros = jnp.zeros(k.shape[:-1] + (steps,), k.dtype)
    w = jnp.concatenate([k[..., :1], zeros, k[..., :0:-1]], axis=-1)  # (..., 2T)
    tiled = jnp.tile(w, (1,) * (k.ndim - 1) + (steps,))[..., :steps * (2 * steps - 1)]
    return tiled.reshape(k.shape[:-1] + (steps, 2 * steps - 1))[..., :steps]


def diag_chunked_conv(lam, b, c, dt, u, chunk: int, method: str = "zoh"):
    """The S4D convolution y = K * u computed in chunks of T steps, as matrix products, without
    the full-length kernel.

    u: (Cc, B, L, H) float32, one input sequence per output channel c (a bidirectional layer
    passes the reversed sequence as c = 1). Per channel h, with the sequence cut into chunks of T
    (the last one zero-padded):
      - within a chunk, y = Toeplitz(K[0:T]) u, a (T, T) lower-triangular matrix product;
      - each chunk's end state x_end = sum_j A_bar^(T-1-j) B_bar u_j, an (N2, T) product;
      - the states carried across chunks, S_m = A_bar^T S_{m-1} + x_end_m, by an associative
        scan over the L/T chunks;
      - the carried state's share of the next chunk, y_k += 2 Re(C^* A_bar^(k+1) S_{m-1}), a
        (T, N2) product.
    Only K[0:T] and the powers A_bar^0..A_bar^T are formed (O(H N2 T)).

    Returns: (Cc, B, L, H) float32, y[c] = causal convolution of u[c] with K[c].
    """
    channels, batch, length, h = u.shape
    steps = max(1, min(chunk, length))  # T
    blocks = -(-length // steps)  # L / T
    k = diag_kernel(lam, b, c, dt, steps, method)  # (Cc, H, T)
    toeplitz = _lower_toeplitz(k)  # (Cc, H, T, T)
    a_bar, b_bar = discretize_diag(lam, b, dt, method)
    # A_bar^j, j = 0..T, as exp(j log A_bar) (see diag_kernel for log A_bar under ZOH).
    log_a = (dt.astype(jnp.float32)[:, None] * lam.astype(jnp.complex64) if method == "zoh"
             else jnp.log(a_bar))
    powers = jnp.exp(log_a[..., None] * jnp.arange(steps + 1, dtype=jnp.float32))  # (H, N2, T+1)
    # In: (Cc, B, L, H) -> (Cc, H, B L/T, T), the chunks of every sequence as rows.
    x = jnp.pad(u, ((0, 0), (0, 0), (0, blocks * steps - length), (0, 0)))
    x = x.reshape(channels, batch * blocks, steps, h).transpose(0, 3, 1, 2)
    within = jnp.einsum("chij,chmj->chmi", toeplitz, x, precision=_HIGHEST)
    # End states: [Re | Im] of A_bar^(T-1-j) B_bar, (H, 2 N2, T): one real product.
    into = powers[..., steps - 1::-1] * b_bar[..., None]
    into = jnp.concatenate([into.real, into.imag], axis=1)
    ends = jnp.einsum("hsj,chmj->chms", into, x, precision=_HIGHEST)  # (Cc, H, B L/T, 2 N2)
    n2 = lam.shape[-1]
    ends = jax.lax.complex(ends[..., :n2], ends[..., n2:])
    ends = ends.reshape(channels, h, batch, blocks, n2)
    carry = jnp.broadcast_to(powers[:, None, None, :, steps], ends.shape)  # A_bar^T

    def combine(left, right):
        return left[0] * right[0], right[0] * left[1] + right[1]

    states = jax.lax.associative_scan(combine, (carry, ends), axis=3)[1]
    # The state entering chunk m is S_{m-1} (zero for the first chunk).
    prev = jnp.pad(states[:, :, :, :-1], ((0, 0),) * 3 + ((1, 0), (0, 0)))
    prev = prev.reshape(channels, h, batch * blocks, n2)
    # 2 Re(C^* A^(k+1) S) = 2 ([Re F | -Im F] . [Re S | Im S]), F = conj(C) A^(k+1): (Cc, H, 2 N2, T)
    out = c.astype(jnp.complex64).conj()[..., None] * powers[None, ..., 1:]
    out = 2.0 * jnp.concatenate([out.real, -out.imag], axis=2)
    prev = jnp.concatenate([prev.real, prev.imag], axis=-1)
    y = within + jnp.einsum("chsk,chms->chmk", out, prev, precision=_HIGHEST)  # (Cc, H, M, T)
    y = y.reshape(channels, h, batch, blocks * steps).transpose(0, 2, 3, 1)
    return y[:, :, :length]
