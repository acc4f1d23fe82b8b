"""S4D initialisations (LegS, Lin, Inv) and the reference's clipping of B, in hippo and S4Layer."""
import flax.linen as nn
import jax
import numpy as np
import pytest

from spade_jax.model.ssm import S4Layer, hippo


def test_s4d_lin_is_half_plus_i_pi_n_with_unit_b():
    lam, b = hippo.diag_init("lin", 8)
    np.testing.assert_allclose(lam, [-0.5, -0.5 + np.pi * 1j, -0.5 + 2 * np.pi * 1j,
                                     -0.5 + 3 * np.pi * 1j], atol=1e-12)
    np.testing.assert_array_equal(b, np.ones(4))


def test_s4d_inv_follows_the_hippo_asymptotics():
    # N = 8: Im Lambda_n = (8 / pi) (8 / (2n + 1) - 1) = 56/pi, 40/(3 pi), 24/(5 pi), 8/(7 pi)
    lam, b = hippo.diag_init("inv", 8)
    np.testing.assert_allclose(lam.imag, np.array([56, 40 / 3, 24 / 5, 8 / 7]) / np.pi, rtol=1e-12)
    np.testing.assert_allclose(lam.real, -0.5)
    np.testing.assert_array_equal(b, np.ones(4))


def test_s4d_legs_is_the_diagonal_part_of_the_dplr_form():
    lam, b = hippo.diag_init("legs", 16)
    lam_dplr, _, b_dplr, _ = hippo.dplr_legs(16)
    np.testing.assert_array_equal(lam, lam_dplr)
    np.testing.assert_array_equal(b, b_dplr)
    assert np.all(np.diff(lam.imag) < 0)  # largest imaginary part first


@pytest.mark.parametrize("init", hippo.DIAG_INITS)
def test_every_init_is_stable_and_keeps_the_positive_member_of_each_pair(init):
    lam, _ = hippo.diag_init(init, 64)
    assert lam.shape == (32,)
    assert np.all(lam.real < 0) and np.all(lam.imag >= 0)


def test_clip_bounds_only_the_imaginary_part_of_legs_b():
    _, b = hippo.diag_init("legs", 64)
    assert np.abs(b.imag).max() > 30  # what the reference's B_clip = 2 exists for
    clipped = hippo.clip_imag(b, 2.0)
    np.testing.assert_array_equal(clipped.real, b.real)
    small = np.abs(b.imag) <= 2.0
    np.testing.assert_array_equal(clipped[small], b[small])
    np.testing.assert_array_equal(clipped.imag[~small], 2.0 * np.sign(b.imag[~small]))
    assert hippo.clip_imag(b, None) is b
    with pytest.raises(ValueError, match="positive"):
        hippo.clip_imag(b, 0.0)


def test_unknown_init_is_refused():
    with pytest.raises(ValueError, match="one of"):
        hippo.diag_init("fourier", 8)
    with pytest.raises(ValueError, match="even state size"):
        hippo.diag_init("lin", 5)


def _params(**kw):
    layer = S4Layer(d_model=3, d_state=8, **kw)
    u = jax.random.normal(jax.random.PRNGKey(1), (1, 16, 3))
    return layer, nn.unbox(layer.init(jax.random.PRNGKey(0), u))["params"], u


@pytest.mark.parametrize("init", ["lin", "inv"])
def test_layer_parameters_hold_the_init(init):
    _, params, _ = _params(kernel="diag", ssm_init=init)
    lam, b = hippo.diag_init(init, 8)
    np.testing.assert_allclose(params["A_re"], np.broadcast_to(np.log(0.5), (3, 4)), rtol=1e-6)
    np.testing.assert_allclose(params["A_im"], np.broadcast_to(lam.imag, (3, 4)), rtol=1e-6)
    np.testing.assert_array_equal(params["B"][..., 0], 1.0)
    np.testing.assert_array_equal(params["B"][..., 1], 0.0)
    assert "P" not in params


@pytest.mark.parametrize("kernel", ["dplr", "diag"])
def test_layer_clips_legs_b_as_the_reference_unless_told_not_to(kernel):
    _, params, _ = _params(kernel=kernel)
    _, b = hippo.diag_init("legs", 8)
    assert np.abs(b.imag).max() > 2.0
    np.testing.assert_allclose(params["B"][0, :, 1], np.clip(b.imag, -2, 2), rtol=1e-6)
    _, raw, _ = _params(kernel=kernel, b_clip=None)
    np.testing.assert_allclose(raw["B"][0, :, 1], b.imag, rtol=1e-6)


def test_lin_kernel_is_the_powered_diagonal_system():
    """K[k] = 2 Re sum_n conj(C_n) B_bar_n A_bar_n^k with Lambda from S4D-Lin (ZOH), float64."""
    layer, params, u = _params(kernel="diag", ssm_init="lin")
    length = u.shape[1]
    k = np.asarray(layer.apply({"params": params}, length, method="conv_kernel"), np.float64)
    lam, _ = hippo.diag_init("lin", 8)
    dt = np.exp(np.asarray(params["log_dt"], np.float64))
    c = np.asarray(params["C"][0], np.float64)
    c = c[..., 0] + 1j * c[..., 1]
    for h in range(3):
        a_bar = np.exp(dt[h] * lam)
        b_bar = (a_bar - 1) / lam  # B = 1
        want = [2 * (c[h].conj() * b_bar * a_bar ** i).sum().real for i in range(length)]
        # float32 (A_bar - 1) at dt |Lambda| ~ 1e-3 loses ~1e-5 relative
        np.testing.assert_allclose(k[0, h], want, atol=2e-4 * np.abs(want).max())


@pytest.mark.parametrize("kw,match", [
    (dict(kernel="dplr", ssm_init="lin"), "not available for kernel='dplr'"),
    (dict(kernel="diag", ssm_init="legt"), "not available"),
    (dict(kernel="diag", b_clip=-1.0), "positive"),
])
def test_bad_init_options_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        _params(**kw)
