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

Diagonal initialisations (S4D, Gu et al. 2022), each (Lambda, B) with N/2 modes, n = 0..N/2-1:
    'legs'  S4D-LegS: the diagonal part Lambda of the DPLR form above and its B~ = V^* B
    'lin'   S4D-Lin:  Lambda_n = -1/2 + i pi n,                     B_n = 1
    'inv'   S4D-Inv:  Lambda_n = -1/2 + i (N/pi) (N/(2n+1) - 1),    B_n = 1
The reference (state-spaces/s4, hippo.nplr) clips the imaginary part of LegS's B~ to [-2, 2]
(`B_clip=2.0`, for its DPLR and its diagonal kernels alike): `clip_imag`.
"""
import numpy as np

DIAG_INITS = ("legs", "lin", "inv")


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
    # As the reference: the eigenvectors of the negative imaginary parts (eigh's ascending order),
    # here conjugated to stand for the positive member of each pair. The phase of each column
    # (and so of B~ = V^* B, which `clip_imag` acts on) is the eigensolver's, as there.
    lam = real - 1j * imag[: n // 2]
    v = v[:, : n // 2].conj()
    if np.min(lam.imag) <= 0:
        raise ValueError(f"HiPPO-LegS eigenvalues are not conjugate pairs at N={n}")
    return lam, v.conj().T @ p, v.conj().T @ b, v


def clip_imag(z: np.ndarray, bound: float | None) -> np.ndarray:
    """z with its imaginary part clipped to [-bound, bound] (None: z unchanged), as the
    reference clips HiPPO-LegS's B~ (`B_clip`)."""
    if bound is None:
        return z
    if bound <= 0:
        raise ValueError(f"the bound on Im B must be positive or None, got {bound}")
    return z.real + 1j * np.clip(z.imag, -bound, bound)


def diag_init(init: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The S4D initialisation `init` ('legs', 'lin' or 'inv'; see the module docstring) of a
    state of size n (even): (Lambda (n/2,), B (n/2,)), complex128, the positive imaginary
    member of each conjugate pair, largest imaginary part first for 'legs' and 'inv'."""
    if init not in DIAG_INITS:
        raise ValueError(f"S4D initialisation must be one of {DIAG_INITS}, got {init!r}")
    if init == "legs":
        lam, _, b, _ = dplr_legs(n)
        return lam, b
    if n < 2 or n % 2:
        raise ValueError(f"a diagonal state needs an even state size >= 2, got {n}")
    k = np.arange(n // 2, dtype=np.float64)
    imag = np.pi * k if init == "lin" else n / np.pi * (n / (2 * k + 1) - 1)
    return -0.5 + 1j * imag, np.ones(n // 2, np.complex128)
