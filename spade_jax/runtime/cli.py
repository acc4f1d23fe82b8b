"""How every entry point runs: user errors as one short message, bugs with their traceback.

A user error (`spade_jax.runtime.errors.UserError`: a bad flag, config value, file or folder) prints
`error: <message>` on stderr, one paragraph without a traceback, and exits with status 2
(`errors.EXIT_USER_ERROR`). `--verbosity=1` (absl entry points) or SPADE_JAX_TRACEBACK=1 prints
the traceback above it. Any other exception is a bug: Python prints its traceback as usual.
Exit statuses: 0 finished, 2 user error, 75 preempted after saving (rerun to resume), 130
interrupted (Ctrl-C; training saves first), 1 a bug.

    @cli.user_errors                       # argparse entry points (lra.generate, lra.report, ...)
    def main(argv=None) -> int: ...

    def run(argv) -> int:                  # absl entry points (lra.main, lm.main, lm.evaluate, ...)
        return cli.run_absl(argv, define_flags, main, __doc__)
    if __name__ == "__main__":
        sys.exit(run(sys.argv))

`run_absl` defines the entry point's flags on a fresh `absl.flags.FlagValues` for each call, so
that entry points can be run one after another in one process (the tests do). ml_collections
config flags are checked here: a missing config file, a config argument it rejects, and an
unknown `--config.<field>` (with the closest known fields) are user errors.
"""
import functools
import os
import re
import sys
import traceback

from absl import flags, logging
from ml_collections import config_flags
from ml_collections.config_flags.config_flags import is_config_flag

from spade_jax.runtime import errors

HELP = ("--help", "-h", "-?", "--helpshort", "--helpfull")


def traceback_wanted() -> bool:
    """SPADE_JAX_TRACEBACK=1, or --verbosity >= 1 on an absl entry point's command line."""
    if os.environ.get("SPADE_JAX_TRACEBACK", "").lower() in ("1", "true", "yes"):
        return True
    verbosity = flags.FLAGS["verbosity"]
    return bool(verbosity.present) and verbosity.value >= 1


def report(error: BaseException) -> None:
    """Prints a user error as `error: <message>` (blank lines dropped: one paragraph)."""
    if traceback_wanted():
        traceback.print_exception(error)
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    print("error: " + "\n".join(lines or [type(error).__name__]), file=sys.stderr, flush=True)


def user_errors(main):
    """Wraps an entry point's main(...) -> int | None: a UserError is reported (`report`) and
    gives exit status 2; Ctrl-C (KeyboardInterrupt) one line and status 130
    (errors.EXIT_INTERRUPTED; what it left is the entry point's to clean up, in `finally`
    blocks); None gives 0."""
    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            status = main(*args, **kwargs)
        except errors.UserError as error:
            report(error)
            return errors.EXIT_USER_ERROR
        except KeyboardInterrupt:
            if traceback_wanted():
                traceback.print_exc()
            print("interrupted (Ctrl-C): stopped; nothing half-written was kept", file=sys.stderr,
                  flush=True)
            return errors.EXIT_INTERRUPTED
        return 0 if status is None else status
    return wrapper


def define_config(flag_values, argv, help_text: str) -> None:
    """The --config flag (an ml_collections config file, `path[:argument]`, locked) and the
    --workdir flag of a training entry point, both required."""
    config_flags.DEFINE_config_file("config", None, help_text, flag_values=flag_values,
                                    lock_config=True, sys_argv=list(argv))
    flags.mark_flag_as_required("config", flag_values=flag_values)
    define_workdir(flag_values, "Run directory: checkpoints, logs, results.")


def define_workdir(flag_values, help_text: str) -> None:
    """The required --workdir flag; empty (an unset shell variable) is refused, since the
    current folder would be read or written instead."""
    flags.DEFINE_string("workdir", None, help_text, flag_values=flag_values)
    flags.mark_flag_as_required("workdir", flag_values=flag_values)
    flags.register_validator(
        "workdir", lambda value: value is None or bool(value.strip()),
        message="--workdir is empty (an unset shell variable?): name the run's folder, e.g. "
                "--workdir=runs/listops (an empty one would mean the current folder)",
        flag_values=flag_values)


def _config_values(flag_values, argv) -> dict:
    """{flag name: value} of the config-file flags given in argv."""
    found = {}
    for name in flag_values:
        if not is_config_flag(flag_values[name]):
            continue
        for i, arg in enumerate(argv):
            if arg.startswith(f"--{name}="):
                found[name] = arg.split("=", 1)[1]
            elif arg == f"--{name}" and i + 1 < len(argv):
                found[name] = argv[i + 1]
    return found


def _check_config_files(flag_values, argv) -> None:
    for name, value in _config_values(flag_values, argv).items():
        path, _, arg = value.partition(":")
        if not os.path.isfile(path):
            raise errors.ConfigError(
                f"--{name}={value}: no config file {path!r} (relative to {os.getcwd()}); the "
                f"configs are configs/<task>.py, e.g. --{name}=configs/listops.py:smoke")
        _check_config_file(name, value, path, arg or None)


def _check_config_file(name: str, value: str, path: str, arg) -> None:
    """Loads the config file `path` and calls its get_config(arg) as ml_collections will: a
    file that does not load (a syntax error, an import that fails), has no get_config, raises
    anything but a UserError in it, or returns something other than a ConfigDict is a
    ConfigError naming the file and line (not a traceback through ml_collections)."""
    import importlib.util

    import ml_collections

    where = f"--{name}={value}"
    try:
        spec = importlib.util.spec_from_file_location("_checked_config", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        if not callable(getattr(module, "get_config", None)):
            raise errors.ConfigError(f"{where}: {path} defines no get_config(arg) function; a "
                                     f"config file returns its config from get_config (see "
                                     f"configs/listops.py)")
        config = module.get_config(arg) if arg is not None else module.get_config()
    except errors.UserError:
        raise
    except Exception as e:  # noqa: BLE001 - the user's config file failed: name where
        line = _line_in(e, path)
        raise errors.ConfigError(f"{where}: {path}{f', line {line}' if line else ''}: "
                                 f"{type(e).__name__}: {e}") from e
    if not isinstance(config, ml_collections.ConfigDict):
        raise errors.ConfigError(
            f"{where}: get_config returned a {type(config).__name__}, not an "
            f"ml_collections.ConfigDict: build it with lra.configs.build / lm.configs.build (or "
            f"from spade_jax.train.defaults.default_config())")


def _line_in(error: BaseException, path: str):
    """The line of `path` where `error` arose (the innermost frame in that file; for a
    SyntaxError, its own line), or None."""
    if isinstance(error, SyntaxError) and error.filename and \
            os.path.abspath(error.filename) == os.path.abspath(path):
        return error.lineno
    lines = [frame.lineno for frame in traceback.extract_tb(error.__traceback__)
             if os.path.abspath(frame.filename) == os.path.abspath(path)]
    return lines[-1] if lines else None


def _unknown_override(flag_values, argv):
    """The ConfigError for the first `--config.<field>` naming no field, or None."""
    for name, value in _config_values(flag_values, argv).items():
        try:
            config = flag_values[name].parser.parse(value)
        except Exception:  # the config itself fails: reported by the caller's error
            return None
        for arg in argv:
            match = re.match(rf"--(?:no)?{re.escape(name)}\.([^=]+)", arg)
            if match:
                try:
                    errors.check_dotted(config, match.group(1), prefix=name)
                except errors.ConfigError as error:
                    return error
    return None


def _flag_error(error: flags.Error, flag_values, argv) -> errors.ConfigError:
    """A flags.Error as one short message: the config file's own error without ml_collections'
    embedded traceback; 'is required' for a missing required flag."""
    text = str(error)
    required = re.search(r"Flag --(\S+) must have a value other than None", text)
    if required:
        return errors.ConfigError(f"--{required.group(1)} is required (--help lists the flags)")
    if "Traceback (most recent call last)" in text:  # the config file's get_config() raised
        name = re.match(r"flag --([^=\s]+)=", text)
        name = name.group(1) if name else "config"
        value = _config_values(flag_values, argv).get(name, "")
        last = [line.strip() for line in text.strip().splitlines() if line.strip()][-1]
        last = re.sub(r"^\w+(\.\w+)*(Error|Exception): ", "", last)
        return errors.ConfigError(f"--{name}={value}: {last}")
    return errors.ConfigError(text + " (--help lists the flags)")


def run_absl(argv, define_flags, main, doc: str = "") -> int:
    """Runs an absl-flags entry point in this process and returns its exit status.

    define_flags(flag_values, argv) defines the entry point's flags on a fresh FlagValues (argv
    is what config flags read their overrides from); main(flag_values) runs it. absl's own
    flags (--verbosity, --logtostderr, ...) are parsed too; without --verbosity, logging is at
    WARNING (orbax logs every checkpoint at INFO)."""
    argv = [str(a) for a in argv]
    flag_values = flags.FlagValues()
    define_flags(flag_values, argv)
    if any(arg in HELP for arg in argv[1:]):
        print(doc.strip() + "\n\n" + flag_values.get_help())
        return 0

    @user_errors
    def parse_and_run():
        _check_config_files(flag_values, argv)
        flags.FLAGS.unparse_flags()  # a fresh command line (also when run in-process again)
        try:
            rest = flags.FLAGS(argv, known_only=True)
            rest = flag_values(rest)
        except flags.Error as error:
            raise _flag_error(error, flag_values, argv) from None
        except (AttributeError, KeyError) as error:  # ml_collections: an unknown override
            unknown = _unknown_override(flag_values, argv)
            if unknown is None:
                raise
            raise unknown from error
        if len(rest) > 1:
            raise errors.ConfigError(f"unexpected argument(s) {rest[1:]}: flags are written "
                                     f"--name=value (--help lists them)")
        logging.use_absl_handler()
        if not flags.FLAGS["verbosity"].present:
            logging.set_verbosity(logging.WARNING)
        return main(flag_values)

    return parse_and_run()
