"""S4Layer: the S4 (DPLR) or S4D (diagonal) state-space layer as a Flax Linen module.

    y = conv(u, K) + D * u          (per channel; no activation, no gating, no output linear)

u, y: (batch, length, d_model). K is the layer's real convolution kernel (see `conv_kernel`).
Causal by default; `bidirectional=True` adds a second kernel run over the reversed sequence:
y_t = sum_{s<=t} K0[t-s] u_s + sum_{s>=t} K1[s-t] u_s + D u_t.

Parameters (complex quantities as trailing (real, imag) pairs, all float32; H = d_model,
N2 = d_state / 2 modes, each standing for a conjugate pair):
  log_dt (H,)          log step size, initialised log-uniform in [dt_min, dt_max]
  A_re   (H, N2)       log(-Re Lambda) (the real part stays negative: stable)
  A_im   (H, N2)       Im Lambda
  P      (H, N2, 2)    rank-one term of A = Lambda - P P^*  (kernel='dplr' only)
  B      (H, N2, 2)
  C      (K, H, N2, 2) K = 2 if bidirectional else 1 ("C tilde" of S4 for kernel='dplr')
  D      (H,)
A, P, B and log_dt are what S4 trains with its own learning rate; the engine selects them by name.
"""
import math
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from spade_jax.model import axes, platform
from spade_jax.model.ssm import hippo, kernels

SSM_PARAM_NAMES = ("A_re", "A_im", "P", "B", "log_dt")
# mode='chunked': steps per chunk, the fastest of 64 / 128 / 256 on the 2-core CPU (issue 22;
# S4Config.chunk_steps defaults to the same)
CHUNK_SIZE = 128


def _as_complex(x):
    return jax.lax.complex(x[..., 0], x[..., 1])


def _as_pair(z):
    return np.stack([z.real, z.imag], axis=-1).astype(np.float32)


def _local_fft_conv(u, k):
    """Linear convolution along axis 1 by FFT: u (B, L, H), k (H, n_k) -> (B, L, H), float32.

    k is a circular kernel of length 2L (a two-sided kernel puts negative lags at the end) or a
    causal kernel of length L (zero-padded to 2L). The FFTs run over the last axis of u in
    (B, H, L) layout, where XLA wants them: with the product and the kernel's gradient (a sum
    over the batch) in that layout too, the layer's forward + backward ran 1.2x faster on the
    2-core CPU (issue 22) than with the FFTs along axis 1 of (B, L, H).
    """
    length = u.shape[1]
    n = 2 * length
    u_f = jnp.fft.rfft(jnp.swapaxes(u, 1, 2), n=n, axis=-1)  # (B, H, L+1)
    k_f = jnp.fft.rfft(k, n=n, axis=-1)  # (H, L+1)
    y = jnp.fft.irfft(u_f * k_f, n=n, axis=-1)[..., :length]  # (B, H, L)
    return jnp.swapaxes(y, 1, 2)


# The four-step DFT's inner factor: N = N1 x DFT_INNER points, the inner transform a matmul
# against a (128, 128) matrix (the TPU's MXU tile).
DFT_INNER = 128


def _dft_plan(length: int) -> dict:
    """A four-step DFT of N = N1 * N2 >= 2 * length points (N2 = DFT_INNER, N1 even), as real
    float32 matrices that act on complex arrays held as their real and imaginary parts stacked
    along the outer axis, [re; im] (2 N1 rows), or side by side along the inner one, [re | im]
    (2 N2 columns), so that each complex product is one real matrix product:

      outer (2 N1, N1)   [Re F1; Im F1]: real input, outer DFT -> [re; im]
      inner (2 N2, 2 N2) [[Re F2, Im F2], [-Im F2, Re F2]]: [re | im] -> inner DFT [re | im]
      inner_inv          the same of conj(F2)
      outer_inv (N1, 2 N1) [Re G1, -Im G1], G1 = conj(F1) / N: [re; im] -> the real part of
                         the inverse outer DFT
      twiddle (2, N1, N2) the twiddles W_N^(k1 n2) (re, im)
    Frequency k = k1 + N1 * k2 sits at [k1, k2]; sample n = n1 * N2 + n2 at [n1, n2]."""
    n2 = DFT_INNER
    n1 = 2 * -(-2 * length // (2 * n2))
    k1 = np.arange(n1)[:, None]
    f1 = np.exp(-2j * np.pi * k1 * np.arange(n1)[None, :] / n1)  # [k1, n1]
    f2 = np.exp(-2j * np.pi * np.arange(n2)[:, None] * np.arange(n2)[None, :] / n2)
    g1 = np.conj(f1).T / (n1 * n2)  # [n1, k1]
    twiddle = np.exp(-2j * np.pi * k1 * np.arange(n2)[None, :] / (n1 * n2))

    def side_by_side(f):  # [re | im] @ this = [re | im] of the product with f
        return np.block([[f.real, f.imag], [-f.imag, f.real]])
    return dict(n1=n1, n2=n2, outer=np.concatenate([f1.real, f1.imag]),
                inner=side_by_side(f2), inner_inv=side_by_side(np.conj(f2)),
                outer_inv=np.concatenate([g1.real, -g1.imag], axis=1),
                twiddle=np.stack([twiddle.real, twiddle.imag]))


def _matmul(a, b, spec):
    return jnp.einsum(spec, jnp.asarray(a, jnp.float32) if isinstance(a, np.ndarray) else a,
                      jnp.asarray(b, jnp.float32) if isinstance(b, np.ndarray) else b,
                      precision=jax.lax.Precision.HIGHEST)


def _dft(x, plan):
    """The DFT of N points of real x (..., rows, N2), sample n = n1 * N2 + n2 at [n1, n2]
    (rows <= N1; samples from rows * N2 on are zero): (..., N1, 2 N2), [re | im] with frequency
    k = k1 + N1 * k2 at [k1, k2]. The outer DFT, the twiddles, the inner DFT: two products."""
    n1, rows = plan["n1"], x.shape[-2]
    a = _matmul(plan["outer"][:, :rows], x, "kn,...nm->...km")  # (..., 2 N1, N2): [re; im]
    ar, ai = a[..., :n1, :], a[..., n1:, :]
    tr, ti = plan["twiddle"]
    b = jnp.concatenate([ar * tr - ai * ti, ar * ti + ai * tr], axis=-1)  # [re | im]
    return _matmul(b, plan["inner"], "...km,mj->...kj")


def _inverse_dft_real(y, plan, rows: int):
    """The real part of the inverse DFT of y (..., N1, 2 N2) ([re | im], `_dft`'s frequency
    layout), samples n < rows * N2 only: (..., rows, N2)."""
    n2 = plan["n2"]
    d = _matmul(y, plan["inner_inv"], "...kj,jm->...km")  # [re | im]
    dr, di = d[..., :n2], d[..., n2:]
    tr, ti = plan["twiddle"]
    e = jnp.concatenate([dr * tr + di * ti, di * tr - dr * ti], axis=-2)  # [re; im], conj twiddle
    return _matmul(plan["outer_inv"][:rows], e, "nk,...km->...nm")


def _local_dft_conv(u, k):
    """`_local_fft_conv` with the FFTs as four-step DFTs, i.e. matrix products (the TPU's MXU):
    N = N1 x 128 >= 2L points in (batch, H, N1, 128) layout (the length on the lanes), the
    frequencies left in the transform's own order (the product with the kernel's transform and
    the inverse do not need the natural one), real and imaginary parts side by side so that
    each complex product is one real matrix product, the half of the input that is padding
    skipped, and only the first L real outputs formed. The products run at full float32
    precision (Precision.HIGHEST). On a TPU the compiled Path-X SPADE step moves a fraction of
    the bytes of XLA's FFT there (docs/benchmarks.md)."""
    batch, length, h = u.shape
    plan = _dft_plan(length)
    n1, n2 = plan["n1"], plan["n2"]
    n = n1 * n2
    if k.shape[1] == 2 * length:  # two-sided: the negative lags move to the end of N points
        k = jnp.concatenate([k[:, :length], jnp.zeros((h, n - 2 * length), k.dtype),
                             k[:, length:]], axis=1)
    else:
        k = jnp.pad(k, ((0, 0), (0, n - k.shape[1])))
    k_f = _dft(k.reshape(h, n1, n2), plan)  # (H, N1, 2 N2)
    rows = n1 // 2  # u's samples from N / 2 >= L on are zero
    x = jnp.pad(jnp.swapaxes(u, 1, 2), ((0, 0), (0, 0), (0, rows * n2 - length)))
    u_f = _dft(x.reshape(batch, h, rows, n2), plan)  # (B, H, N1, 2 N2)
    ur, ui, kr, ki = u_f[..., :n2], u_f[..., n2:], k_f[..., :n2], k_f[..., n2:]
    y_f = jnp.concatenate([ur * kr - ui * ki, ur * ki + ui * kr], axis=-1)
    out_rows = -(-length // n2)
    y = _inverse_dft_real(y_f, plan, out_rows).reshape(batch, h, out_rows * n2)[..., :length]
    return jnp.swapaxes(y, 1, 2)


def _fft_conv(u, k):
    """`_local_fft_conv` (`_local_dft_conv` where the program is for a TPU), run per batch shard
    when a mesh is set (see
    spade_jax.train.sharding.model_context) and the rules split activations' batch axis.

    XLA's partitioners do not split an FFT over its batch axes: they gather the whole batch
    onto every device first, so each device would compute every example's FFTs. Under
    `jax.shard_map` each device transforms its own examples; the kernel's gradient is summed
    over the batch shards by shard_map's transpose.
    """
    conv = _local_dft_conv if platform.target_platform() == "tpu" else _local_fft_conv
    mesh = jax.sharding.get_abstract_mesh()
    spec = nn.logical_to_mesh_axes((axes.ACT_BATCH, None, None))
    names = (spec[0],) if isinstance(spec[0], str) else tuple(spec[0] or ())
    if mesh.empty or not names or u.shape[0] % math.prod(mesh.shape[a] for a in names):
        return conv(u, k)  # (a batch the shards do not divide stays whole)
    spec = P(spec[0], None, None)
    return jax.shard_map(conv, mesh=mesh, in_specs=(spec, P()), out_specs=spec)(u, k)


class S4Layer(nn.Module):
    """S4 / S4D layer. See the module docstring for the computation and the parameters.

    Attributes:
      d_model: channels H (the last axis of the input).
      d_state: state size N of the real system (N/2 complex modes); even.
      kernel: 'dplr' (S4: HiPPO-LegS, Cauchy kernel, bilinear) or 'diag' (S4D: Vandermonde).
      mode: 'fft' (convolution by FFT, O(L log L)), 'scan' (the diagonal recurrence with an
        associative scan; kernel='diag' only) or 'chunked' (kernel='diag' only: matrix products
        within chunks of `chunk_size` steps, the diagonal recurrence across them; see
        kernels.diag_chunked_conv).
      chunk_size: T, the steps per chunk of mode='chunked' (the fastest of 64 / 128 / 256 measured
        on the CPU).
      discretization: 'bilinear' or 'zoh'; None picks 'bilinear' for dplr (its only option) and
        'zoh' for diag.
      ssm_init: the initial (Lambda, B) (spade_jax.model.ssm.hippo): 'legs' (HiPPO-LegS; S4's DPLR form, or
        its diagonal part for kernel='diag': S4D-LegS), 'lin' (S4D-Lin) or 'inv' (S4D-Inv); the
        last two for kernel='diag' only (they have no low-rank term P).
      b_clip: the imaginary part of the initial B~ clipped to [-b_clip, b_clip] (None: not
        clipped); 2.0 as the reference (HiPPO-LegS's B~ reaches |Im| ~ 40 at N = 64; the ones of
        'lin' / 'inv' are unaffected).
      dt_min, dt_max: range of the log-uniform initial step sizes.
      bidirectional: add a second kernel over the reversed sequence (non-causal).
      l_max: for kernel='dplr', the length that "C tilde" is defined for: the kernel is computed at
        l_max and truncated, so every input length <= l_max sees the same system, and the
        recurrent view (`step`) needs it. None: the input's length.
    """

    d_model: int
    d_state: int = 64
    kernel: str = "dplr"
    mode: str = "fft"
    chunk_size: int = CHUNK_SIZE
    discretization: Optional[str] = None
    ssm_init: str = "legs"  # not `init`: that is nn.Module.init
    b_clip: Optional[float] = 2.0
    dt_min: float = 0.001
    dt_max: float = 0.1
    bidirectional: bool = False
    l_max: Optional[int] = None

    def setup(self):
        if self.kernel not in ("dplr", "diag"):
            raise ValueError(f"S4Layer.kernel must be 'dplr' or 'diag', got {self.kernel!r}")
        if self.mode not in ("fft", "scan", "chunked"):
            raise ValueError("S4Layer.mode must be 'fft', 'scan' or 'chunked', got "
                             f"{self.mode!r}")
        if self.mode != "fft" and self.kernel != "diag":
            raise ValueError(f"S4Layer.mode={self.mode!r} needs kernel='diag' (a DPLR state matrix "
                             "is not diagonal); use mode='fft' with kernel='dplr'")
        if self.chunk_size < 1:
            raise ValueError(f"S4Layer.chunk_size must be >= 1, got {self.chunk_size}")
        if self._discretization() not in ("bilinear", "zoh") or (
                self.kernel == "dplr" and self._discretization() != "bilinear"):
            raise ValueError(f"S4Layer.discretization {self.discretization!r} is not available for "
                             f"kernel={self.kernel!r} (dplr: 'bilinear'; diag: 'zoh' or 'bilinear')")
        if not 0 < self.dt_min <= self.dt_max:
            raise ValueError(f"S4Layer needs 0 < dt_min <= dt_max, got {self.dt_min}, {self.dt_max}")
        if self.ssm_init not in hippo.DIAG_INITS or (self.kernel == "dplr"
                                                     and self.ssm_init != "legs"):
            raise ValueError(f"S4Layer.ssm_init {self.ssm_init!r} is not available for kernel="
                             f"{self.kernel!r} (dplr: 'legs'; diag: one of {hippo.DIAG_INITS})")
        if self.kernel == "dplr":
            lam, p, b, _ = hippo.dplr_legs(self.d_state)  # validates d_state
        else:
            lam, b = hippo.diag_init(self.ssm_init, self.d_state)
        b = hippo.clip_imag(b, self.b_clip)
        h, n2 = self.d_model, self.d_state // 2
        per_channel = lambda x: np.broadcast_to(x, (h,) + x.shape).astype(np.float32)
        state_axes = (axes.EMBED, axes.SSM_STATE)

        def log_dt_init(key, shape, dtype):
            lo, hi = np.log(self.dt_min), np.log(self.dt_max)
            return jax.random.uniform(key, shape, dtype, lo, hi)

        self.log_dt = self._param("log_dt", log_dt_init, (axes.EMBED,), (h,))
        self.A_re = self._fixed("A_re", per_channel(np.log(-lam.real)), state_axes)
        self.A_im = self._fixed("A_im", per_channel(lam.imag), state_axes)
        if self.kernel == "dplr":
            self.P = self._fixed("P", per_channel(_as_pair(p)), state_axes + (None,))
        self.B = self._fixed("B", per_channel(_as_pair(b)), state_axes + (None,))
        channels = 2 if self.bidirectional else 1
        self.C = self._param("C", nn.initializers.normal(np.sqrt(0.5)),
                             (axes.SSM_OUT,) + state_axes + (None,), (channels, h, n2, 2))
        self.D = self._param("D", nn.initializers.normal(1.0), (axes.EMBED,), (h,))

    def _param(self, name, init, axes, shape):
        return self.param(name, nn.with_logical_partitioning(init, axes), shape, jnp.float32)

    def _fixed(self, name, value, axes):
        return self._param(name, lambda key, shape, dtype: jnp.asarray(value, dtype), axes,
                           value.shape)

    def _discretization(self) -> str:
        if self.discretization is not None:
            return self.discretization
        return "bilinear" if self.kernel == "dplr" else "zoh"

    def _system(self):
        """(Lambda (H, N2), P (H, N2) or None, B (H, N2), C (K, H, N2)) complex; dt (H,)."""
        lam = jax.lax.complex(-jnp.exp(self.A_re), self.A_im)
        p = _as_complex(self.P) if self.kernel == "dplr" else None
        return lam, p, _as_complex(self.B), _as_complex(self.C), jnp.exp(self.log_dt)

    def conv_kernel(self, length: int):
        """The materialised convolution kernel: (K, d_model, length) float32, K = 2 if
        bidirectional (index 1 is applied to the reversed sequence) else 1."""
        lam, p, b, c, dt = self._system()
        if self.kernel == "diag":
            return kernels.diag_kernel(lam, b, c, dt, length, self._discretization())
        l_kernel = length if self.l_max is None else self.l_max
        if length > l_kernel:
            raise ValueError(f"S4Layer(kernel='dplr', l_max={self.l_max}) got a sequence of length "
                             f"{length}; raise l_max to at least the longest input")
        return kernels.dplr_kernel(lam, p, b, c, dt, l_kernel)[..., :length]

    def __call__(self, u, mask=None):
        """u: (batch, length, d_model); mask: optional (batch, length), True for real tokens
        (padding is zeroed before the SSM). Returns (batch, length, d_model) in u.dtype."""
        if u.ndim != 3 or u.shape[-1] != self.d_model:
            raise ValueError(f"S4Layer expects (batch, length, {self.d_model}), got {u.shape}")
        x = u.astype(jnp.float32)
        if mask is not None:
            x = jnp.where(mask[..., None], x, 0.0)
        y = {"fft": self._fft, "scan": self._scan, "chunked": self._chunked}[self.mode](x)
        return (y + x * self.D).astype(u.dtype)

    def _fft(self, x):
        length = x.shape[1]
        k = self.conv_kernel(length)  # (K, H, L)
        if not self.bidirectional:
            return _fft_conv(x, k[0])
        # One two-sided circular kernel of length 2L: lag d >= 0 at index d, lag -d at 2L - d.
        backward = jnp.concatenate([k[1, :, :1], jnp.zeros_like(k[1]), k[1, :, :0:-1]], axis=-1)
        two_sided = jnp.pad(k[0], ((0, 0), (0, length))) + backward
        return _fft_conv(x, two_sided)

    def _scan(self, x):
        lam, _, b, c, dt = self._system()
        a_bar, b_bar = kernels.discretize_diag(lam, b, dt, self._discretization())
        bu = x[..., None] * b_bar  # (B, L, H, N2)
        a = jnp.broadcast_to(a_bar, bu.shape)

        def combine(left, right):
            return left[0] * right[0], right[0] * left[1] + right[1]

        def readout(states, ci):
            return 2.0 * (states * ci.conj()).real.sum(-1)

        y = readout(jax.lax.associative_scan(combine, (a, bu), axis=1)[1], c[0])
        if self.bidirectional:
            y += readout(jax.lax.associative_scan(combine, (a, bu), axis=1, reverse=True)[1], c[1])
        return y

    def _chunked(self, x):
        lam, _, b, c, dt = self._system()
        u = jnp.stack([x, x[:, ::-1]]) if self.bidirectional else x[None]  # (K, B, L, H)
        y = kernels.diag_chunked_conv(lam, b, c, dt, u, self.chunk_size, self._discretization())
        return y[0] + y[1, :, ::-1] if self.bidirectional else y[0]

    # Recurrent view (causal layers only).

    def init_state(self, batch: int):
        """Recurrent state for `step`: a dict with the hidden state 'x' (batch, H, n) complex64 and
        the discretised recurrence ('A_bar', 'B_bar', 'C_bar', computed here once so that each
        step costs O(H n^2) for dplr, n = N, or O(H n) for diag, n = N/2)."""
        if self.bidirectional:
            raise ValueError("S4Layer.step is only defined for causal layers (bidirectional=False)")
        lam, p, b, c, dt = self._system()
        if self.kernel == "diag":
            a_bar, b_bar = kernels.discretize_diag(lam, b, dt, self._discretization())
            c_bar = c[0]
        else:
            if self.l_max is None:
                raise ValueError("S4Layer(kernel='dplr').init_state needs l_max: C tilde is "
                                 "defined for a length, and the recurrence is derived from it")
            a_dense, b_dense = kernels.dplr_dense(lam, p, b)
            a_bar, b_bar = kernels.discretize_dense_bilinear(a_dense, b_dense, dt)
            c_full = jnp.concatenate([c[0], c[0].conj()], axis=-1)
            c_bar = kernels.c_tilde_to_c_bar(a_bar, c_full, self.l_max)
        x = jnp.zeros((batch,) + b_bar.shape, jnp.complex64)
        return {"x": x, "A_bar": a_bar, "B_bar": b_bar, "C_bar": c_bar}

    def step(self, state, u_t):
        """One step of the recurrence: u_t (batch, d_model) -> (new state, y_t (batch, d_model))."""
        x32 = u_t.astype(jnp.float32)
        if self.kernel == "diag":
            x = state["A_bar"] * state["x"] + state["B_bar"] * x32[..., None]
            scale = 2.0  # the conjugate partner of each mode
        else:
            x = jnp.einsum("hij,bhj->bhi", state["A_bar"], state["x"]) + state["B_bar"] * x32[..., None]
            scale = 1.0  # conjugate pairs are explicit in the dense state
        y = scale * jnp.einsum("bhn,hn->bh", x, state["C_bar"].conj()).real + x32 * self.D
        return dict(state, x=x), y.astype(u_t.dtype)
