"""docs/architecture.md's recipes ("Adding a model family, a task or a benchmark"), followed as
written: the family example pasted from the page, every call the recipes spell with keywords
checked against the signature it names, and a benchmark written step by step as its recipe
says, run. (The task recipe is followed end to end by tests/lra/test_task_registry.py, and with
the whole suite by tests/test_extensibility.py.)"""
import ast
import glob
import importlib
import inspect
import json
import os
import re
import subprocess
import sys
import textwrap

import jax

from spade_jax.runtime import local_cluster

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGE = os.path.join(ROOT, "docs", "architecture.md")


def _recipes() -> str:
    text = open(PAGE).read()
    start = text.index("## Adding a model family, a task or a benchmark")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def _section(title: str) -> str:
    text = _recipes()
    start = text.index(f"### {title}")
    end = text.find("\n### ", start + 1)
    return text[start:end if end > 0 else None]


def test_the_family_example_pasted_from_the_page_builds_on_every_task(monkeypatch):
    """The one-edit family, exactly as the page prints it: registered, it is a `:model=` on every
    task's config (WikiText-103's included: its mixers decode), checked, built and counted, and
    docs/configs.md would list it."""
    from docs import config_reference
    from spade_jax.model import families, models
    from spade_jax.model.config import ModelConfig
    from spade_jax.train import config_builder
    monkeypatch.setattr(families, "FAMILIES", dict(families.FAMILIES))  # restored after
    example = re.search(r"`(register\(Family\(.*?\)\))`", _section("A model family"), re.S)
    assert example, "the family recipe no longer shows a register(Family(...)) example"
    call = " ".join(example.group(1).split())
    name = ast.literal_eval(ast.parse(call).body[0].value.args[0].args[0])
    assert name not in families.FAMILIES, f"the page's example name {name!r} is taken already"
    exec(call, vars(families))
    assert name in families.FAMILIES and name in config_reference.render()
    assert name in families.lm_families()  # both of its mixers decode: a language model too
    for path in sorted(glob.glob(os.path.join(ROOT, "configs", "*.py"))):
        config = config_builder.load(path, f"model={name},smoke")
        config.model.vocab_size = config.model.vocab_size or 64  # (the LM's comes from its data)
        cfg = ModelConfig.from_config(config.model)
        families.check(cfg)
        kinds = families.layer_kinds(cfg)
        assert kinds == ("s4",) + ("window",) * (cfg.num_layers - 1), path
        tokens = jax.ShapeDtypeStruct((2, min(cfg.max_len, 64)), "int32")
        inputs = (tokens, tokens) if cfg.head == "retrieval" else (tokens,)
        out = jax.eval_shape(lambda *x: models.build_model(cfg).init_with_output(
            jax.random.PRNGKey(0), *x)[0], *inputs)
        assert out.shape == ((2, tokens.shape[1], cfg.vocab_size) if cfg.head == "lm"
                             else (2, cfg.num_classes)), path
        counted = families.forward_flops(cfg, tokens.shape[1])
        assert counted["per_sequence"] > 0 and counted["per_step_fixed"] > 0  # S4: its kernel


def _keyword_calls(text: str):
    """(callee, keywords) of each `Callee(... kw=...)` the text spells."""
    for match in re.finditer(r"\b([A-Z]\w*|[a-z_]+(?:\.[a-z_]+)+)\(", text):
        depth, i = 1, match.end()
        while depth and i < len(text):
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        inner = re.sub(r'"[^"]*"', '""', text[match.end():i - 1])  # (f-strings' "x=")
        inner = re.sub(r"\([^()]*\)", "", inner)  # nested calls' own keywords
        yield match.group(1), set(re.findall(r"(?<![\w.=])(\w+)=", inner))


def test_the_recipes_call_what_exists_with_keywords_it_takes():
    """Every call a recipe spells with keywords names a real callable and only its parameters
    (a renamed field or argument breaks this, not a reader following the page)."""
    from benchmarks import report, sweep
    from lra import configs
    from lra.data import cache
    from lra.data.specs import Generator, Option, TaskSpec
    from spade_jax.model.attention import AttentionKind
    from spade_jax.model.families import Family, Mixer
    known = {"Family": Family, "Mixer": Mixer, "AttentionKind": AttentionKind,
             "TaskSpec": TaskSpec, "Generator": Generator, "Option": Option,
             "cache.build_or_load": cache.build_or_load, "lra.configs.build": configs.build,
             "sweep.run": sweep.run, "report.write_report": report.write_report}
    seen = set()
    for callee, keywords in _keyword_calls(_recipes()):
        if not keywords:
            continue
        assert callee in known, f"the recipes call {callee}(...) with keywords: add it here"
        parameters = inspect.signature(known[callee]).parameters
        assert keywords <= set(parameters), (callee, keywords - set(parameters))
        seen.add(callee)
    assert {"AttentionKind", "Mixer", "TaskSpec", "cache.build_or_load"} <= seen
    family = _section("A model family")
    for option in ("fields", "check", "variant_of"):  # "optional `fields`, `check` or ..."
        assert f"`{option}" in family and option in inspect.signature(Family).parameters
    for dotted in re.findall(r"`((?:spade_jax|lra|benchmarks)(?:\.\w+)+)", _recipes()):
        module, _, attr = dotted.rpartition(".")
        try:
            importlib.import_module(dotted)
        except ImportError:
            assert hasattr(importlib.import_module(module), attr), dotted


# What a user writes by following "### A benchmark", step 1, word by word.
BENCHMARK = '''
"""One forward pass of a family's model at the LRA Text width against length.

    python -m {name} [--families=spade,...] [--lengths=1K,...] [--quick]
"""
import sys

from benchmarks import fit, flags, report, sweep, text_config, timing
from benchmarks.rows import exit_code
from spade_jax.model import families


def measure(family, length, repeats, warmup, deadline):
    import flax.linen as nn
    import jax
    from spade_jax.model import models
    from spade_jax.model.config import ModelConfig
    model = text_config.text_model(f"model={{family}}", **text_config.QUICK_MODEL)
    cfg = ModelConfig.from_config(dict(model, max_len=length))
    net = models.build_model(cfg)
    tokens = jax.random.randint(jax.random.PRNGKey(0), (2, length), 1, cfg.vocab_size)
    params = nn.unbox(jax.jit(net.init)(jax.random.PRNGKey(1), tokens[:, :8]))
    stats = timing.time_jitted(net.apply, params, tokens, repeats=repeats, warmup=warmup,
                               deadline=deadline)
    return dict(stats, tokens=2 * length)


def main(argv=None):
    p = flags.parser(__doc__)
    flags.add_names(p, "--families", tuple(families.FAMILIES))
    args = flags.parse(p, argv)
    out, header = report.start("{name}", args)
    series = [{{"label": f, "family": f, "kwargs": {{"family": f}}}} for f in args.families]
    rows = sweep.run(series, args.lengths, args, "{name}:measure", runtime=header)
    fits, fit_sections = fit.growth(rows)
    columns = [("family", lambda r: r["family"])] + report.TIMING_COLUMNS
    report.write_report(out, "{name}", header=header, args=args, rows=rows,
                        sections=[("forward", report.markdown_table(rows, columns))]
                        + fit_sections, data=dict(fits=fits))
    return exit_code(rows)


if __name__ == "__main__":
    sys.exit(main())
'''


def test_a_benchmark_written_as_the_recipe_says_runs(tmp_path):
    """Step 1's pieces, put together as the page lists them, make a benchmark that runs its
    points in fresh processes and writes its report (the module sits outside the checkout, so
    its points import it by its own name instead of benchmarks.<name>)."""
    recipe = _section("A benchmark")
    for piece in ("measure(", "flags.parser(__doc__)", "report.start(", "sweep.run(",
                  "report.write_report(", "fit.growth", "exit_code(rows)",
                  "timing.time_jitted(fn, *inputs", "text_config.text_model("):
        assert piece in recipe, f"the benchmark recipe no longer says {piece}"
    name = "recipe_forward"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(BENCHMARK.format(name=name)))
    env = local_cluster.cpu_env(1)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), ROOT, env.get("PYTHONPATH", "")])
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", name, "--quick", "--lengths=128",
                           "--families=spade,local", f"--out={out}"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    report = (out / f"{name}.md").read_text()
    assert "## forward" in report and "Growth exponents" in report
    rows = json.loads((out / f"{name}.json").read_text())["rows"]
    assert [(r["family"], r["length"], r["status"]) for r in rows] == [
        ("spade", 128, "ok"), ("local", 128, "ok")]
    assert all(r["median_s"] > 0 and r["tokens"] == 256 for r in rows)
