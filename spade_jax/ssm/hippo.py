"""HiPPO-LegS and its diagonal-plus-low-rank (DPLR) form, in numpy (initialisation only).

HiPPO-LegS (Gu et al. 2020), with the sign convention of S4 (A is stable):

    A[n, k] = -sqrt(2n+1) sqrt(2k+1)   if n > k
            = -(n + 1)                 if n = k
            = 0                        if n < k
    B[n]    = sqrt(2n + 1)

With P[n] = sqrt(n + 1/2), S = A + P P^T is normal (-1/2 on the diagonal plus a skew-symmetric
part), so A = V (Lambda - P~ P~^*) V^*, with S = V Lambda V^* and P~ = V^* P. S is real, so its
eigenvalues come in conjugate pairs; S4 keeps one of each pair (N/2 of them) and sums the
conjugate partner analytically.
"""
import numpy as np


def hippo_legs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The dense HiPPO-LegS matrices: A (n, n) and B (n,), float64."""
    if n < 1:
        raise ValueError(f"HiPPO state size must be positive, got {n}")
    q = np.sqrt(2.0 * np.arange(n) + 1.0)
    a = -np.tril(np.outer(q, q), -1) - np.diag(np.arange(n) + 1.0)
    return a, q.copy()


def dplr_legs(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """HiPPO-LegS in DPLR form, one eigenvalue per conjugate pair.

    Args:
      n: the state size N of the real system; must be even.

    Returns:
      (Lambda, P, B, V): Lambda (n/2,) complex128 with positive imaginary parts, P and B (n/2,)
      complex128 (P~ = V^* P, B~ = V^* B), V (n, n/2) complex128 with orthonormal columns.
      With V_full = [V, conj V], Lambda_full = [Lambda, conj Lambda], P_full = [P, conj P]:
      A = V_full (diag(Lambda_full) - P_full P_full^*) V_full^*.
    """
    if n < 2 or n % 2:
        raise ValueError(f"the DPLR form of HiPPO-LegS needs an even state size >= 2, got {n}")
    a, b = hippo_legs(n)
    p = np.sqrt(np.arange(n) + 0.5)
    s = a + np.outer(p, p)
    real = np.mean(np.diagonal(s))  # exactly -1/2: S is -I/2 plus a skew-symmetric matrix
    imag, v = np.linalg.eigh(-1j * (s - real * np.eye(n)))  # Hermitian: S - real*I = i * (that)
    order = np.argsort(imag)[::-1][: n // 2]  # the positive imaginary part of each pair
    lam = real + 1j * imag[order]
    v = v[:, order]
    if np.min(lam.imag) <= 0:
        raise ValueError(f"HiPPO-LegS eigenvalues are not conjugate pairs at N={n}")
    return lam, v.conj().T @ p, v.conj().T @ b, v
