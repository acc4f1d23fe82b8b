import numpy as np
import pytest

from spade_jax.model.ssm import hippo


def test_hippo_legs_entries():
    a, b = hippo.hippo_legs(4)
    assert a[1, 0] == pytest.approx(-np.sqrt(3))
    assert a[3, 1] == pytest.approx(-np.sqrt(7 * 3))
    assert a[2, 2] == pytest.approx(-3.0)
    assert a[0, 2] == 0.0
    np.testing.assert_allclose(b, np.sqrt([1, 3, 5, 7]))


@pytest.mark.parametrize("n", [2, 8, 64])
def test_dplr_form_reconstructs_dense_legs(n):
    lam, p, b, v = hippo.dplr_legs(n)
    a, b_dense = hippo.hippo_legs(n)
    v_full = np.concatenate([v, v.conj()], axis=1)
    lam_full = np.concatenate([lam, lam.conj()])
    p_full = np.concatenate([p, p.conj()])
    b_full = np.concatenate([b, b.conj()])
    rebuilt = v_full @ (np.diag(lam_full) - np.outer(p_full, p_full.conj())) @ v_full.conj().T
    np.testing.assert_allclose(rebuilt, a, atol=1e-9 * n)
    np.testing.assert_allclose(v_full @ b_full, b_dense, atol=1e-9 * n)
    np.testing.assert_allclose(lam.real, -0.5)
    assert np.all(lam.imag > 0)


@pytest.mark.parametrize("n", [0, 3])
def test_dplr_rejects_odd_or_empty_state(n):
    with pytest.raises(ValueError, match="even state size"):
        hippo.dplr_legs(n)
