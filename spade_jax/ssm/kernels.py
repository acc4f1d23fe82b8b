"""SSM convolution kernels: the DPLR (S4) Cauchy route and the diagonal (S4D) Vandermonde route.

Both describe a linear time-invariant system of N/2 complex modes plus their conjugates (a real
system of state size N), per channel h:

        x_k = A_bar x_{k-1} + B_bar u_k,      y_k = 2 Re( C^* x_k )   (conjugate pair summed)

and return its real convolution kernel K[c, h, k], k = 0..L-1. All work is in float32 /
complex64 whatever the model's compute dtype. The (channels, H, N/2, L) intermediate is never
materialised for long L: the work is split into chunks along the frequency (DPLR) or time (S4D)
axis with `lax.map` over checkpointed chunks, so memory is O(H·N·chunk) in the forward pass and
in the backward pass alike.

Shapes (H = channels of the layer, N2 = N/2 modes, Cc = output channels, 1 or 2):
    lam: (H, N2) complex, Re < 0;  p, b: (H, N2) complex;  c: (Cc, H, N2) complex;  dt: (H,) real.
"""
import functools

import jax
import jax.numpy as jnp

# Elements of one (H, N2, chunk) complex64 block: 2**22 elements is 32 MiB.
CHUNK_ELEMENTS = 2**22


def _chunked(fn, positions, per_position: int):
    """Applies fn to chunks of the 1-D array `positions` and concatenates along the last axis.

    fn(chunk) -> array (..., len(chunk)). Chunks are sized so one chunk's (H, N2, chunk)
    intermediate holds about CHUNK_ELEMENTS elements; each chunk is rematerialised in the backward
    pass, so only fn's inputs and outputs are kept.
    """
    n = positions.shape[0]
    size = max(1, min(n, CHUNK_ELEMENTS // max(per_position, 1)))
    if size >= n:
        return fn(positions)
    count = -(-n // size)
    padded = jnp.pad(positions, (0, count * size - n), mode="edge").reshape(count, size)
    out = jax.lax.map(jax.checkpoint(fn), padded)  # (count, ..., size)
    out = jnp.moveaxis(out, 0, -2)
    return out.reshape(*out.shape[:-2], count * size)[..., :n]


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
        q = 1 / (alpha^2 - 2 Re(lam) alpha beta + |lam|^2 beta^2),

    so the sums over modes are real-weighted matrix products with q (one reciprocal per mode and
    frequency), and no term is infinite at omega = -1.

    Returns: (Cc, H, length) float32.
    """
    lam, p, b, c = (x.astype(jnp.complex64) for x in (lam, p, b, c))
    channels = c.shape[0]
    two_over_dt = 2.0 / dt.astype(jnp.float32)  # (H,)
    # The Cauchy numerators, stacked: v00 = C^* B and v01 = C^* P per output channel, then
    # v10 = P^* B and v11 = P^* P.
    v = jnp.concatenate([c.conj() * b, c.conj() * p, (p.conj() * b)[None], (p.conj() * p)[None]])
    v = jnp.moveaxis(v, 0, 1)  # (H, K, N2), K = 2 Cc + 2
    weights = jnp.concatenate([2.0 * v.real, 2.0 * (v * lam.conj()[:, None]).real], axis=1)
    lam_re, lam_abs2 = lam.real[..., None], (jnp.abs(lam) ** 2)[..., None]  # (H, N2, 1)

    def at_frequencies(k):
        omega = jnp.exp(-2j * jnp.pi * k.astype(jnp.float32) / length).astype(jnp.complex64)
        alpha = two_over_dt[:, None] * (1.0 - omega)  # (H, F)
        beta = 1.0 + omega  # (F,)
        ab, bb = (alpha * beta)[:, None], (beta * beta)[None, None]
        q = 1.0 / (alpha[:, None] ** 2 - 2.0 * lam_re * ab + lam_abs2 * bb)  # (H, N2, F)
        s = jax.lax.complex(jnp.einsum("hkn,hnf->hkf", weights, q.real),
                            jnp.einsum("hkn,hnf->hkf", weights, q.imag))  # (H, 2K, F)
        s = alpha[:, None] * s[:, : v.shape[1]] - beta * s[:, v.shape[1]:]  # (H, K, F)
        s00, s01 = s[:, :channels], s[:, channels: 2 * channels]  # (H, Cc, F)
        s10, s11 = s[:, -2:-1], s[:, -1:]
        out = 2.0 * s00 - 2.0 * s01 * (beta * s10 / (1.0 + beta * s11))
        return jnp.moveaxis(out, 1, 0)  # (Cc, H, F)

    freqs = jnp.arange(length // 2 + 1)
    spectrum = _chunked(at_frequencies, freqs, lam.shape[0] * lam.shape[1])
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


def diag_kernel(lam, b, c, dt, length: int, method: str = "zoh"):
    """The S4D kernel K[c, h, k] = 2 Re sum_n conj(C_n) B_bar_n A_bar_n^k (Vandermonde), float32.

    Returns: (Cc, H, length) float32.
    """
    a_bar, b_bar = discretize_diag(lam, b, dt, method)
    log_a = jnp.log(a_bar)  # (H, N2); A_bar^k = exp(k log A_bar)
    weights = c.astype(jnp.complex64).conj() * b_bar  # (Cc, H, N2)

    def at_steps(k):
        powers = jnp.exp(log_a[..., None] * k.astype(jnp.float32))  # (H, N2, T)
        real = jnp.einsum("chn,hnt->cht", weights.real, powers.real)
        return 2.0 * (real - jnp.einsum("chn,hnt->cht", weights.imag, powers.imag))

    return _chunked(at_steps, jnp.arange(length), lam.shape[0] * lam.shape[1]).astype(jnp.float32)


def dplr_dense(lam, p, b):
    """The full (conjugate pairs made explicit) dense system of a DPLR parameterisation.

    Returns: A (H, N, N) complex64 = diag(Lambda_f) - P_f P_f^*, and B (H, N) complex64, with
    X_f = [X, conj X] along the mode axis.
    """
    full = lambda x: jnp.concatenate([x, x.conj()], axis=-1).astype(jnp.complex64)
    lam_f, p_f, b_f = full(lam), full(p), full(b)
    a = jax.vmap(jnp.diag)(lam_f) - p_f[:, :, None] * p_f.conj()[:, None, :]
    return a, b_f


def discretize_dense_bilinear(a, b, dt):
    """Bilinear discretisation of dense systems: A (H, N, N), B (H, N), dt (H,) -> A_bar, B_bar."""
    eye = jnp.eye(a.shape[-1], dtype=a.dtype)
    half = (dt.astype(jnp.float32) / 2.0)[:, None, None]
    inv = jnp.linalg.inv(eye - half * a)
    return inv @ (eye + half * a), jnp.einsum("hij,hj->hi", inv, b) * dt[:, None]


@functools.partial(jax.jit, static_argnames=("length",))
def c_tilde_to_c_bar(a_bar, c_tilde, length: int):
    """Undoes S4's "C tilde" reparameterisation for the recurrent view.

    C_tilde^* = C_bar^* (I - A_bar^L), so C_bar = (I - A_bar^L)^{-*} C_tilde.
    a_bar: (H, N, N); c_tilde: (H, N) -> C_bar (H, N).
    """
    eye = jnp.eye(a_bar.shape[-1], dtype=a_bar.dtype)
    a_pow = jnp.linalg.matrix_power(a_bar, length)
    m = jnp.conj(jnp.swapaxes(eye - a_pow, -1, -2))
    return jnp.linalg.solve(m, c_tilde[..., None])[..., 0]
