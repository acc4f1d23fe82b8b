"""The flags every benchmark takes: `parser` (--out, --lengths, --repeats, --warmup, --quick,
--timeout_s, --memory_gb, and optionally --batch and --passes) and `parse` (fills the defaults
that depend on --quick); comma-separated selections (`add_names`); lengths with K = 1024
(`parse_lengths`, `length_label`); config overrides --set KEY=VALUE (`add_config_overrides`)."""
import argparse
import ast
import re

from spade_jax.runtime import host

PASSES = ("fwd", "fwd+bwd")


def parse_lengths(text: str) -> list:
    """'1K,2K,4096' -> [1024, 2048, 4096] (K = 1024), sorted, without duplicates."""
    lengths = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        match = re.fullmatch(r"(\d+)\s*([kK]?)", part)
        if not match:
            raise argparse.ArgumentTypeError(f"length {part!r}: expected an integer, K = 1024 "
                                             f"(e.g. 1K,2K,4096)")
        value = int(match.group(1)) * (1024 if match.group(2) else 1)
        if value < 1:
            raise argparse.ArgumentTypeError(f"length {part!r} must be positive")
        lengths.add(value)
    if not lengths:
        raise argparse.ArgumentTypeError("no lengths given")
    return sorted(lengths)


def length_label(length: int) -> str:
    """4096 -> '4K', 1000 -> '1000'."""
    return f"{length // 1024}K" if length % 1024 == 0 else str(length)


def names(choices):
    """An argparse type: 'a,b' -> ['a', 'b'], each one of `choices`, in the order of choices."""
    def parse_names(text: str) -> list:
        given = [t.strip() for t in text.split(",") if t.strip()]
        bad = [t for t in given if t not in choices]
        if bad or not given:
            raise argparse.ArgumentTypeError(f"{bad or text!r}: choose from {', '.join(choices)}")
        return [c for c in choices if c in given]
    return parse_names


def add_names(p: argparse.ArgumentParser, flag: str, choices, default=None) -> None:
    """A comma-separated selection flag (`names`); default: all the choices."""
    default = list(choices) if default is None else default
    p.add_argument(flag, type=names(choices), default=default,
                   help=f"comma-separated, from {','.join(choices)} (default {','.join(default)})")


def config_override(text: str) -> tuple:
    """An argparse type: 'model.s4.kernel=diag' -> ('model.s4.kernel', 'diag'); the value is a
    Python literal where it parses as one (0.0, True, (0, 1)), else a string."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE, e.g. model.dropout=0.0")
    try:
        value = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        pass
    return key.strip(), value


def add_config_overrides(p: argparse.ArgumentParser) -> None:
    """--set KEY=VALUE, repeatable: args.set is a list of (dotted key, value) pairs."""
    p.add_argument("--set", action="append", default=[], type=config_override,
                   metavar="KEY=VALUE", help="override a field of the Text config "
                   "(configs/text.py), e.g. model.dropout=0.0 or model.s4.kernel=diag; repeatable")


def overrides_label(args) -> str:
    """', model.dropout=0.0, ...' for a report's title: the --set overrides, '' for none."""
    return "".join(f", {k}={v}" for k, v in args.set)


def parser(description: str, *, lengths: str = "1K,2K,4K,8K,16K,32K,64K",
           quick_lengths: str = "256,512", repeats: int = 5, batch: int = 0,
           passes: bool = False) -> argparse.ArgumentParser:
    """The flags every benchmark takes (with `batch`: --batch, its default; with `passes`:
    --passes); add its own, then call `parse`."""
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", help="output folder; must not exist or be empty (default: "
                   "benchmarks/results/<name>/<timestamp>)")
    if lengths:
        p.add_argument("--lengths", type=parse_lengths, default=None,
                       help=f"sequence lengths, K = 1024 (default {lengths}; --quick: "
                            f"{quick_lengths})")
    p.add_argument("--repeats", type=int, default=None,
                   help=f"timed calls per point after warm-up; the median is reported "
                        f"(default {repeats}; --quick: 2)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls after compilation")
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes and lengths: a smoke run of the script (seconds); the "
                        "numbers mean nothing")
    p.add_argument("--timeout_s", type=float, default=None,
                   help="time budget of one point, compilation included (default 600; "
                        "--quick: 120); a point past it is stopped and its series ends")
    p.add_argument("--memory_gb", type=float, default=None,
                   help="RSS budget of one point's process (default: 80%% of the memory "
                        "available at start); a point past it is stopped and its series ends")
    if batch:
        p.add_argument("--batch", type=int, default=batch, help="sequences per call")
    if passes:
        add_names(p, "--passes", PASSES)
    p.set_defaults(_lengths=lengths, _quick_lengths=quick_lengths, _repeats=repeats)
    return p


def parse(p: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """Parses the flags and fills the defaults that depend on --quick."""
    args = p.parse_args(argv)
    if args._lengths and args.lengths is None:
        args.lengths = parse_lengths(args._quick_lengths if args.quick else args._lengths)
    if args.repeats is None:
        args.repeats = 2 if args.quick else args._repeats
    if args.timeout_s is None:
        args.timeout_s = 120.0 if args.quick else 600.0
    if args.memory_gb is None:
        available = host.meminfo().get("MemAvailable")
        args.memory_gb = round(0.8 * available / 2**30, 1) if available else None
    if args.repeats < 1 or args.warmup < 0 or args.timeout_s <= 0:
        p.error("--repeats must be >= 1, --warmup >= 0 and --timeout_s > 0")
    if getattr(args, "batch", None) is not None and args.batch < 1:
        p.error(f"--batch must be >= 1 (sequences per step), got {args.batch}")
    return args


def flags_record(args) -> dict:
    """The parsed flags as recorded in <name>.json (argparse's private defaults left out)."""
    return {k: v for k, v in vars(args).items() if not k.startswith("_")}
