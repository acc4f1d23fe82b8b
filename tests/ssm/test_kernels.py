"""The S4 and S4D kernels against dense systems simulated independently in float64 numpy."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spade_jax.model.ssm import hippo, kernels


def _random_dplr(rng, h, n):
    lam, p, b, _ = hippo.dplr_legs(n)
    scale = rng.uniform(0.5, 2.0, (h, 1))
    lam = (lam.real * scale) + 1j * lam.imag * rng.uniform(0.8, 1.2, (h, n // 2))
    p = p * (1 + 0.1 * rng.normal(size=(h, n // 2)))
    b = b + 0.3 * (rng.normal(size=(h, n // 2)) + 1j * rng.normal(size=(h, n // 2)))
    c = rng.normal(size=(2, h, n // 2)) + 1j * rng.normal(size=(2, h, n // 2))
    dt = rng.uniform(0.01, 0.3, h)
    return lam, p, b, c, dt


def _full(x):
    return np.concatenate([x, x.conj()], axis=-1)


def _impulse_response(a_bar, b_bar, c_bar, length):
    """Runs x_k = A x_{k-1} + B u_k, y_k = C^* x_k on a unit impulse (float64)."""
    x = np.zeros_like(b_bar)
    out = []
    for k in range(length):
        x = a_bar @ x + (b_bar if k == 0 else 0.0)
        out.append(c_bar.conj() @ x)
    return np.array(out)


@pytest.mark.parametrize("length", [16, 17])
def test_dplr_kernel_equals_dense_powered_system(length):
    rng = np.random.default_rng(0)
    lam, p, b, c, dt = _random_dplr(rng, h=3, n=8)
    got = np.asarray(kernels.dplr_kernel(*(jnp.asarray(x) for x in (lam, p, b, c, dt)), length))
    assert got.shape == (2, 3, length)
    eye = np.eye(8)
    for h in range(3):
        a = np.diag(_full(lam[h])) - np.outer(_full(p[h]), _full(p[h]).conj())
        inv = np.linalg.inv(eye - dt[h] / 2 * a)
        a_bar, b_bar = inv @ (eye + dt[h] / 2 * a), inv @ _full(b[h]) * dt[h]
        for ch in range(2):
            # C tilde^* = C_bar^* (I - A_bar^L): recover C_bar, then power the dense system.
            c_bar = np.linalg.solve((eye - np.linalg.matrix_power(a_bar, length)).conj().T,
                                    _full(c[ch, h]))
            want = _impulse_response(a_bar, b_bar, c_bar, length)
            assert np.abs(want.imag).max() < 1e-9
            np.testing.assert_allclose(got[ch, h], want.real, atol=2e-5 * np.abs(want).max())


def test_dplr_kernel_identical_when_chunked(monkeypatch):
    rng = np.random.default_rng(1)
    lam, p, b, c, dt = (jnp.asarray(x) for x in _random_dplr(rng, h=2, n=8))
    # a fresh function each call: traced again, so it reads CHUNK_ELEMENTS again
    kernel = lambda: jax.jit(lambda *a: kernels.dplr_kernel(*a, 40))(lam, p, b, c, dt)  # noqa: E731
    whole_dplr = kernel()
    monkeypatch.setattr(kernels, "CHUNK_ELEMENTS", 24)  # 3 positions a chunk, ragged last chunk
    np.testing.assert_allclose(kernel(), whole_dplr, atol=1e-6)


# Lengths around the blocks of ~sqrt(L) steps of the Vandermonde product: one step, a ragged
# last block (21 = 5 x 5 - 4), a square (16), and a long one (1000 = 32 x 32 - 24).
@pytest.mark.parametrize("method, length", [("zoh", 21), ("bilinear", 21), ("zoh", 1),
                                            ("zoh", 16), ("bilinear", 1000)])
def test_diag_kernel_equals_c_abar_power_bbar(method, length):
    rng = np.random.default_rng(2)
    lam, _, b, c, dt = _random_dplr(rng, h=2, n=6)
    got = np.asarray(kernels.diag_kernel(*(jnp.asarray(x) for x in (lam, b, c, dt)), length, method))
    for h in range(2):
        a = np.diag(lam[h])
        if method == "zoh":
            # A_bar = exp(dt A); B_bar = int_0^dt exp(A s) ds B, by the midpoint rule.
            a_bar = np.diag(np.exp(dt[h] * lam[h]))
            s = (np.arange(4000) + 0.5) * dt[h] / 4000
            b_bar = (np.exp(np.outer(lam[h], s)).sum(1) * dt[h] / 4000) * b[h]
        else:
            inv = np.linalg.inv(np.eye(3) - dt[h] / 2 * a)
            a_bar, b_bar = inv @ (np.eye(3) + dt[h] / 2 * a), inv @ b[h] * dt[h]
        for ch in range(2):
            want = 2 * _impulse_response(a_bar, b_bar, c[ch, h], length).real
            np.testing.assert_allclose(got[ch, h], want, atol=1e-5 * np.abs(want).max())


def test_strongly_damped_zoh_modes_give_a_finite_kernel_and_gradient():
    """dt * Re(lambda) = -120: A_bar = exp(-120) underflows to 0 in float32; the kernel is then
    C B_bar at k = 0 and 0 after, with finite gradients (it was NaN everywhere)."""
    lam = jnp.array([[-1200.0 + 5.0j, -0.5 + 3.0j]], jnp.complex64)
    b = jnp.ones((1, 2), jnp.complex64)
    c = jnp.ones((1, 1, 2), jnp.complex64)
    dt = jnp.array([0.1], jnp.float32)
    got = np.asarray(jax.jit(kernels.diag_kernel, static_argnums=(4, 5))(lam, b, c, dt, 8, "zoh"))
    a_bar = np.exp(0.1 * np.asarray(lam[0], np.complex128))
    b_bar = (a_bar - 1) / np.asarray(lam[0], np.complex128)
    want = 2 * (b_bar[None, :] * a_bar[None, :] ** np.arange(8)[:, None]).sum(1).real
    np.testing.assert_allclose(got[0, 0], want, rtol=1e-5, atol=1e-7)
    def total(re, step):
        return kernels.diag_kernel((re + 1j * lam.imag).astype(jnp.complex64), b, c, step, 8).sum()
    for grad in jax.jit(jax.grad(total, argnums=(0, 1)))(lam.real, dt):
        assert np.isfinite(np.asarray(grad)).all()


def test_bad_discretization_is_named():
    with pytest.raises(ValueError, match="'zoh' or 'bilinear'"):
        kernels.discretize_diag(jnp.ones((1, 1)) * -1, jnp.ones((1, 1)), jnp.ones(1), "euler")


def _reference_dplr_kernel(lam, p, b, c, dt, length):
    """The S4 generating function in plain complex arithmetic (two Cauchy terms per conjugate
    pair, Woodbury for the rank-one term), differentiated by JAX's autodiff."""
    omega = jnp.exp(-2j * jnp.pi * jnp.arange(length // 2 + 1) / length)
    g = (2.0 / dt)[:, None] * (1 - omega) / (1 + omega)  # (H, F); omega = -1 is excluded below
    full = lambda x: jnp.concatenate([x, x.conj()], -1)

    def cauchy(u, w):  # sum_n u_n w_n / (g - lam_n) over both members of each pair
        return jnp.einsum("...hn,hnf->...hf", u * w, 1.0 / (g[:, None] - full(lam)[..., None]))

    cf, bf, pf = full(c), full(b), full(p)
    k00, k01 = cauchy(cf.conj(), bf), cauchy(cf.conj(), pf)
    k10, k11 = cauchy(pf.conj(), bf), cauchy(pf.conj(), pf)
    spectrum = 2.0 / (1 + omega) * (k00 - k01 * k10 / (1 + k11))
    return jnp.fft.irfft(spectrum, n=length, axis=-1)


def test_dplr_kernel_gradients_equal_autodiff_of_complex_reference():
    """The hand-written backward pass of the real-arithmetic Cauchy sums (kernels._cauchy_sums)
    gives the gradients that autodiff gives through the plain complex formula."""
    rng = np.random.default_rng(3)
    lam, p, b, c, dt = _random_dplr(rng, h=3, n=8)
    length = 15  # odd: omega = -1 is not a frequency, where the reference divides by zero
    pair = lambda z: jnp.stack([jnp.asarray(z.real), jnp.asarray(z.imag)], -1).astype(jnp.float32)
    args = (pair(lam), pair(p), pair(b), pair(c), jnp.asarray(dt, jnp.float32))
    probe = jnp.asarray(rng.normal(size=(2, 3, length)), jnp.float32)
    cplx = lambda x: jax.lax.complex(x[..., 0], x[..., 1])

    def loss(fn, lam, p, b, c, dt):
        return jnp.sum(probe * fn(cplx(lam), cplx(p), cplx(b), cplx(c), dt, length))

    # jitted: op by op, every primitive of the two backward passes compiled on its own (29 s)
    got = jax.jit(jax.grad(lambda *a: loss(kernels.dplr_kernel, *a), argnums=range(5)))(*args)
    want = jax.jit(jax.grad(lambda *a: loss(_reference_dplr_kernel, *a), argnums=range(5)))(*args)
    forward = lambda fn: jax.jit(lambda *a: fn(*map(cplx, a[:4]), a[4], length))(*args)  # noqa: E731
    np.testing.assert_allclose(forward(kernels.dplr_kernel), forward(_reference_dplr_kernel),
                               atol=1e-4)
    for name, g, w in zip(("lam", "p", "b", "c", "dt"), got, want):
        scale = float(jnp.abs(w).max())
        assert scale > 0, name
        np.testing.assert_allclose(g, w, atol=2e-4 * scale, err_msg=name)


def test_solve_equals_numpy_and_pivots():
    rng = np.random.default_rng(3)
    m = rng.normal(size=(4, 12, 12)) + 1j * rng.normal(size=(4, 12, 12))
    m[:, 0, 0] = 0.0  # the first pivot must come from another row
    rhs = rng.normal(size=(4, 12, 3)) + 1j * rng.normal(size=(4, 12, 3))
    got = kernels.solve(jnp.asarray(m, jnp.complex64), jnp.asarray(rhs, jnp.complex64))
    want = np.linalg.solve(m, rhs)
    np.testing.assert_allclose(got, want, atol=1e-4 * np.abs(want).max())
    swap = jnp.asarray([[0.0, 2.0], [4.0, 0.0]])
    np.testing.assert_allclose(kernels.solve(swap, jnp.eye(2)), [[0, 0.25], [0.5, 0]])
