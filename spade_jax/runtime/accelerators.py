"""Cloud TPU accelerator types as abstract JAX devices, for compiling a job on a machine that has
no TPU (`python -m spade_jax.aot`): libtpu's compile-only topologies
(`jax.experimental.topologies.get_topology_desc`) give devices that XLA's TPU compiler can target;
nothing can run on them.

    accel = parse("v5litepod-8")          # Accelerator: name, chip kind, topology, chips
    devices = topology_devices(accel, slices=2)   # 16 abstract devices, slice_index 0 and 1

Accelerator names are Cloud TPU's (`gcloud compute tpus tpu-vm create --accelerator-type`):
v4-N and v5p-N count TensorCores (2 per chip; JAX sees one device per chip, "megacore"),
v5litepod-N and v6e-N count chips. Per-chip figures (HBM, peak bfloat16 FLOP/s, HBM bandwidth)
are the ones Google publishes on the Cloud TPU system-architecture pages
(cloud.google.com/tpu/docs/v4, /v5e, /v5p, /v6e); they bound a step from below (the roofline),
they are no measurement.
"""
import dataclasses
import os
import tempfile

from spade_jax.runtime.errors import ConfigError

GiB = 2**30


@dataclasses.dataclass(frozen=True)
class Chip:
    """One TPU chip kind and its published figures."""

    kind: str  # topology prefix as libtpu names it: 'v4', 'v5e', 'v5p', 'v6e'
    hbm_bytes: int
    peak_flops: float  # bfloat16 matmul FLOP/s
    hbm_bandwidth: float  # bytes/s
    megacore: bool  # two TensorCores seen as one device (v4, v5p)
    cores_per_chip: int  # TensorCores counted by the accelerator name


CHIPS = {
    "v4": Chip("v4", 32 * GiB, 275e12, 1200e9, True, 2),
    "v5e": Chip("v5e", 16 * GiB, 197e12, 819e9, False, 1),
    "v5p": Chip("v5p", 95 * GiB, 459e12, 2765e9, True, 2),
    "v6e": Chip("v6e", 32 * GiB, 918e12, 1640e9, False, 1),
}
# accelerator-name prefix -> chip kind
PREFIXES = {"v4": "v4", "v5litepod": "v5e", "v5p": "v5p", "v6e": "v6e"}
# Slice shapes (chips) that Cloud TPU offers, by chip count: 2D tori for v5e / v6e, 3D for v4 / v5p.
SHAPES_2D = {1: "1x1", 4: "2x2", 8: "2x4", 16: "4x4", 32: "4x8", 64: "8x8", 128: "8x16",
             256: "16x16"}
SHAPES_3D = {4: "2x2x1", 8: "2x2x2", 16: "2x2x4", 32: "2x4x4", 64: "4x4x4", 128: "4x4x8",
             256: "4x8x8", 512: "8x8x8", 1024: "8x8x16", 2048: "8x16x16", 4096: "16x16x16"}


@dataclasses.dataclass(frozen=True)
class Accelerator:
    name: str  # as Cloud TPU spells it, e.g. 'v5litepod-8'
    chip: Chip
    chips: int  # chips in one slice (= JAX devices)
    topology: str  # libtpu's topology name, e.g. 'v5e:2x4'


def known_names() -> list:
    """Every accelerator name `parse` accepts."""
    names = []
    for prefix, kind in PREFIXES.items():
        chip = CHIPS[kind]
        shapes = SHAPES_3D if chip.megacore else SHAPES_2D
        names += [f"{prefix}-{chips * chip.cores_per_chip}" for chips in shapes]
    return names


def parse(name: str) -> Accelerator:
    """The Accelerator of a Cloud TPU accelerator type; a ConfigError listing the known names
    for any other."""
    prefix, _, count = name.strip().rpartition("-")
    kind = PREFIXES.get(prefix)
    if kind is not None and count.isdigit():
        chip = CHIPS[kind]
        chips, rest = divmod(int(count), chip.cores_per_chip)
        shape = (SHAPES_3D if chip.megacore else SHAPES_2D).get(chips)
        if shape is not None and not rest:
            return Accelerator(name.strip(), chip, chips, f"{kind}:{shape}")
    raise ConfigError(f"--accelerator={name}: not a Cloud TPU accelerator type this command "
                      f"knows; the known ones are {', '.join(known_names())} (v4-N and v5p-N "
                      f"count TensorCores, 2 per chip; v5litepod-N and v6e-N count chips)")


def libtpu_version() -> str | None:
    """The installed libtpu's version, or None when libtpu is not installed."""
    import importlib.metadata
    for package in ("libtpu", "libtpu-nightly"):
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


# What libtpu prints on stderr when it initialises on a machine without TPU chips (it looks for
# the TPU VM's accelerator type and worker hostnames, which are not there): harmless here.
_HOST_NOISE = ("TPU_ACCELERATOR_TYPE", "TPU_WORKER_HOSTNAMES", "Logging before InitGoogle",
               "Source Location Trace", "libtpu_init_utils", "=== ")


def quietly(fn):
    """fn() with file descriptor 2 captured; what it printed comes back on stderr, less the lines
    that libtpu prints on any machine without TPU chips."""
    with tempfile.TemporaryFile(mode="w+b") as captured:
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            return fn()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode(errors="replace").splitlines(keepends=True)
            kept = [line for line in lines if not any(n in line for n in _HOST_NOISE)]
            if kept:
                os.write(2, "".join(kept).encode())


def tpu_attached() -> bool:
    """Whether this machine has TPU chips (a Google PCI device, as JAX's own check reads it)."""
    import glob
    for vendor in glob.glob("/sys/bus/pci/devices/*/vendor"):
        try:
            with open(vendor) as f:
                if f.read().strip() == "0x1ae0":
                    return True
        except OSError:
            continue
    return False


def topology_devices(accel: Accelerator, slices: int = 1) -> list:
    """The abstract JAX devices of `slices` slices of `accel` (compile-only; a multislice
    topology's devices carry slice_index). Raises ConfigError when libtpu is not installed."""
    if libtpu_version() is None:
        raise ConfigError('compiling for a TPU needs libtpu: pip install "jax[tpu]" (the same '
                          "package a TPU VM installs; it also works on a machine without a TPU)")
    from jax.experimental import topologies
    options = {}
    if accel.chip.megacore:
        options["chip_config_name"] = "megacore"
    # Hosts as Cloud TPU builds the slice (libtpu's default is 2 x 2 chips per host): a one-chip
    # slice is its own host, v5e and v6e hosts of 8-chip and larger slices hold 2 x 4 chips.
    if accel.chips == 1:
        options["chips_per_host_bounds"] = (1, 1, 1)
    elif not accel.chip.megacore and accel.chips >= 8:
        options["chips_per_host_bounds"] = (2, 4, 1)
    if slices > 1:
        options["num_slices"] = slices
    if not tpu_attached():
        # libtpu takes a machine-wide lock (/tmp/libtpu_lockfile) that guards TPU chips; with
        # none here, compiles in several processes at once (a sweep, the test suite) are fine
        os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    try:
        desc = quietly(lambda: topologies.get_topology_desc(
            topology_name=accel.topology, platform="tpu", **options))
    except RuntimeError as error:  # jax.errors.JaxRuntimeError
        if "lockfile" not in str(error):
            raise
        raise ConfigError(f"libtpu is in use by another process on this TPU machine "
                          f"({str(error).splitlines()[0]}); compile on another machine, or when "
                          f"that process has ended") from None
    return list(desc.devices)
