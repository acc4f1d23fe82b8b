"""The S4 and S4D kernels against dense systems simulated independently in float64 numpy."""
import jax.numpy as jnp
import numpy as np
import pytest

from spade_jax.ssm import hippo, kernels


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


def test_kernels_identical_when_chunked(monkeypatch):
    rng = np.random.default_rng(1)
    lam, p, b, c, dt = (jnp.asarray(x) for x in _random_dplr(rng, h=2, n=8))
    whole_dplr = kernels.dplr_kernel(lam, p, b, c, dt, 40)
    whole_diag = kernels.diag_kernel(lam, b, c, dt, 40)
    monkeypatch.setattr(kernels, "CHUNK_ELEMENTS", 24)  # 3 positions a chunk, ragged last chunk
    np.testing.assert_allclose(kernels.dplr_kernel(lam, p, b, c, dt, 40), whole_dplr, atol=1e-6)
    np.testing.assert_allclose(kernels.diag_kernel(lam, b, c, dt, 40), whole_diag, atol=1e-6)


@pytest.mark.parametrize("method", ["zoh", "bilinear"])
def test_diag_kernel_equals_c_abar_power_bbar(method):
    rng = np.random.default_rng(2)
    lam, _, b, c, dt = _random_dplr(rng, h=2, n=6)
    length = 21
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


def test_bad_discretization_is_named():
    with pytest.raises(ValueError, match="'zoh' or 'bilinear'"):
        kernels.discretize_diag(jnp.ones((1, 1)) * -1, jnp.ones((1, 1)), jnp.ones(1), "euler")
