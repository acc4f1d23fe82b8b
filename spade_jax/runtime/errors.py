"""User errors: bad input the user can fix (a flag, a config value, a file, a folder).

Everything that checks input raises `UserError` (or one of its subclasses) with a message that
says what is wrong, where (file and line, config field, step) and what to do. The entry points
run through `spade_jax.runtime.cli`, which prints such an error as one paragraph, `error: <message>`,
without a traceback, and exits with `EXIT_USER_ERROR`. Any other exception is a bug and keeps
its traceback.

The subclasses keep the built-in type that callers already catch: `ConfigError` and `DataError`
are ValueErrors, `PathError` is a FileNotFoundError (an OSError).
"""
import difflib

EXIT_USER_ERROR = 2  # 0: finished; 75 (spade_jax.runtime.process.EXIT_PREEMPTED): rerun to resume
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT), as a shell reports it (128 + 2)


class UserError(Exception):
    """Bad input, reported as its message alone (see the module docstring)."""


class ConfigError(UserError, ValueError):
    """A bad flag or config field; the message names it."""


class DataError(UserError, ValueError):
    """Bad or missing input data, or a garbled file; the message names the file (and line)."""


class PathError(UserError, FileNotFoundError):
    """A file or folder that is missing, cannot be written, or is in use by another run."""


def closest(name: str, known, what: str = "the fields") -> str:
    """' (closest: a, b)' for the known names closest to `name` (all of them when they are
    few), else where to look them up."""
    known = sorted(map(str, known))
    if len(known) <= 8:
        return f" (known: {', '.join(known)})"
    matches = difflib.get_close_matches(name, known, n=3, cutoff=0.4)
    where = f"{what}: docs/configs.md"
    return f" (closest: {', '.join(matches)}; {where})" if matches else f" ({where})"


def unknown_field(path: str, known, prefix: str = "config") -> ConfigError:
    """The error for a config field `prefix.path` that does not exist, naming the closest of
    `known` (the field names at the level where `path` goes astray)."""
    parent, _, name = path.rpartition(".")
    where = f"{prefix}.{parent}" if parent else prefix
    return ConfigError(f"{prefix}.{path}: {where} has no field {name!r}"
                       f"{closest(name, known, f'all fields of {where}')}")


def check_dotted(config, path: str, prefix: str = "config") -> None:
    """Raises `unknown_field` unless the dotted `path` names a field of `config` (a ConfigDict
    or dict)."""
    node, done = config, []
    for name in path.split("."):
        keys = list(node.keys()) if hasattr(node, "keys") else []
        if name not in keys:
            raise unknown_field(".".join(done + [name]), keys, prefix)
        node, done = node[name], done + [name]
