"""The embedded default corpus: a small English corpus in WikiText format, written from text that
ships with Python.

It is a STAND-IN for trying the pipeline offline, NOT WikiText-103 (or anything comparable):
report perplexities only on the real data. Its sources are the Python language reference's
topics (`pydoc_data.topics`) and the docstrings of the modules, classes and functions of the
standard library and of numpy, scipy, jax, flax and optax (read from the source files with
`ast`; nothing is imported). One article per topic or module; one section per documented class
or function; prose paragraphs only (code examples, grammar rules and doctests are left out).
The text depends on the installed versions (kept in SOURCES.json beside the files).

It is written the way WikiText was made: Moses-style tokens separated by spaces (`do n't`,
`it 's`, `state @-@ of @-@ the @-@ art`, `1 @,@ 000`, `3 @.@ 5`), ` = Title = ` and
` = = Section = = ` heading lines, blank lines between paragraphs, every line starting with a
space; words seen fewer than 3 times in the training split become `<unk>` in every split
(WikiText-103's threshold), so valid and test need no other vocabulary. Articles are assigned to
train / valid / test (18 / 1 / 1) by a hash of their title. About 1.3M tokens.

    python -m lm.corpus --out=DIR     # writes DIR/wiki.{train,valid,test}.tokens

Existing wiki.*.tokens files in DIR are refused unless --overwrite is given; the files are
written into a temporary folder in DIR and renamed into place when all three are complete.
"""
import ast
import collections
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import sys
import sysconfig

from spade_jax.runtime import cli, paths
from spade_jax.runtime.errors import PathError
from spade_jax.runtime.paths import atomic_folder, cache_root

VERSION = 1
MIN_COUNT = 3
UNK = "<unk>"
_SKIP_DIRS = {"test", "tests", "idlelib", "site-packages", "lib2to3", "turtledemo", "ensurepip",
              "tkinter", "__pycache__"}

_HYPHEN = re.compile(r"(?<=\w)-(?=\w)")
_NUMBER_SEPARATOR = re.compile(r"(?<=\d)([,.])(?=\d)")
_TOKEN = re.compile(r"@[-,.]@|\w+(?=n't\b)|n't\b|'\w+|\w+|[^\w\s]")
_UNDERLINE = re.compile(r"^([*=\-~^\"])\1{2,}$")
_ROLE = re.compile(r":[a-z]+(?::[a-z]+)?:`~?([^`]*)`")  # reStructuredText :func:`name` -> name
_MARKUP = re.compile(r"`+|(?<![\w*])\*+(?=\w)|(?<=\w)\*+(?![\w*])")  # ``code``, *emphasis*


def tokenize(text: str) -> list:
    """WikiText (Moses-style) tokens of a piece of prose."""
    text = _HYPHEN.sub(" @-@ ", text)
    text = _NUMBER_SEPARATOR.sub(lambda m: f" @{m.group(1)}@ ", text)
    return _TOKEN.findall(text)


def _prose(block: str):
    """One line of prose from a block of text, or None for code, grammar, tables, doctests."""
    lines = [line for line in block.splitlines() if line.strip()]
    if not lines or lines[0][:1].isspace():
        return None
    lines = [line.strip() for line in lines if not line.lstrip().startswith((">>>", "...", "|"))]
    text = _MARKUP.sub("", _ROLE.sub(r"\1", " ".join(lines)))
    words = text.split()
    if len(words) < 6 or "::=" in text or sum(w.isalpha() for w in words) < 0.6 * len(words):
        return None
    return text


def _paragraphs(text: str) -> list:
    return [p for p in (_prose(b) for b in re.split(r"\n\s*\n", text)) if p]


def _topic_article(text: str):
    """A pydoc topic: title (first line, underlined), sections under underlined headings."""
    lines = text.strip("\n").splitlines()
    title, sections, heading, body = lines[0].strip(), [], None, []
    for i, line in enumerate(lines[2:], 2):
        if _UNDERLINE.match(line.strip()) and body and body[-1].strip():
            sections.append((heading, _paragraphs("\n".join(body[:-1]))))
            heading, body = body[-1].strip(), []
        elif i + 1 < len(lines) or line.strip():
            body.append(line)
    sections.append((heading, _paragraphs("\n".join(body))))
    return title, [(h, ps) for h, ps in sections if ps]


def _module_article(name: str, source: str):
    """A stdlib module: its docstring, then one section per documented class or function."""
    tree = ast.parse(source)
    sections = [(None, _paragraphs(ast.get_docstring(tree) or ""))]

    def visit(node, prefix):
        for child in node.body:
            if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                if child.name.startswith("_"):
                    continue
                qualified = prefix + child.name
                sections.append((qualified, _paragraphs(ast.get_docstring(child) or "")))
                if isinstance(child, ast.ClassDef):
                    visit(child, qualified + ".")

    visit(tree, "")
    return name, [(h, ps) for h, ps in sections if ps]


# Where the text comes from: the language reference's topics, then the docstrings of the
# standard library and of the packages spade-jax depends on (ours and theirs).
SOURCES = ("topics", "stdlib", "numpy", "scipy", "jax", "flax", "optax")


def _package_root(source):
    if source == "stdlib":
        return sysconfig.get_paths()["stdlib"]
    spec = importlib.util.find_spec(source)
    return os.path.dirname(spec.origin) if spec and spec.origin else None


def _module_articles(source):
    root = _package_root(source)
    if root is None:
        return
    prefix = [] if source == "stdlib" else [source]
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.startswith("test"))
        for file in sorted(files):
            if not file.endswith(".py") or file.startswith("test"):
                continue
            path = os.path.join(folder, file)
            parts = prefix + os.path.relpath(path, root)[:-3].split(os.sep)
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            if not parts or source == "stdlib" and any(p.startswith("_") for p in parts):
                continue  # the standard library's private modules are mostly C-module shims
            try:
                with open(path, encoding="utf-8") as f:
                    yield _module_article(".".join(parts), f.read())
            except (SyntaxError, UnicodeDecodeError, ValueError):
                continue


def articles(sources=SOURCES) -> list:
    """[(title, [(section heading or None, [paragraph, ...]), ...])], sorted by title."""
    found = {}
    for source in sources:
        if source == "topics":
            from pydoc_data import topics
            pairs = (_topic_article(text) for text in topics.topics.values())
        else:
            pairs = _module_articles(source)
        for title, sections in pairs:
            if sections:
                found[title] = sections
    return sorted(found.items())


def source_versions(sources=SOURCES) -> dict:
    """The versions of Python and of the packages the text comes from (the corpus depends on
    them)."""
    versions = {"python": sys.version.split()[0]}
    for source in sources:
        if source not in ("topics", "stdlib"):
            try:
                versions[source] = importlib.metadata.version(source)
            except importlib.metadata.PackageNotFoundError:
                versions[source] = None
    return versions


def _assign(titles) -> dict:
    """{title: split}: 1 in 20 articles to valid, 1 in 20 to test, by a hash of the title (a
    split that gets none takes the training article of lowest hash)."""
    digest = {t: int(hashlib.sha256(t.encode()).hexdigest(), 16) for t in titles}
    split = {t: {0: "valid", 1: "test"}.get(h % 20, "train") for t, h in digest.items()}
    for name in ("valid", "test"):
        if name not in split.values():
            split[min((t for t in titles if split[t] == "train"), key=digest.get)] = name
    return split


def _lines(title, sections):
    """The WikiText lines (token lists; [] is a blank line) of one article."""
    out = [tokenize(title) and ["="] + tokenize(title) + ["="], []]
    for heading, paragraphs in sections:
        if heading:
            out += [["=", "="] + tokenize(heading) + ["=", "="], []]
        for paragraph in paragraphs:
            out += [tokenize(paragraph), []]
    return out


def write(out: str, sources=SOURCES) -> str:
    """Writes out/wiki.{train,valid,test}.tokens; returns out."""
    splits = collections.defaultdict(list)
    found = articles(sources)
    assignment = _assign([title for title, _ in found])
    for title, sections in found:
        splits[assignment[title]].append(_lines(title, sections))
    counts = collections.Counter(tok for article in splits["train"] for line in article
                                 for tok in line)
    os.makedirs(out, exist_ok=True)
    for split in ("train", "valid", "test"):
        with open(os.path.join(out, f"wiki.{split}.tokens"), "w", encoding="utf-8") as f:
            f.write(" \n")
            for article in splits[split]:
                for line in article:
                    words = [w if counts[w] >= MIN_COUNT else UNK for w in line]
                    f.write(" " + " ".join(words) + " \n" if words else " \n")
    return out


def default_dir() -> str:
    """The stand-in corpus in the cache (written once, atomically, then reused)."""
    versions = json.dumps(source_versions(), sort_keys=True)
    tag = f"standin-v{VERSION}-{hashlib.sha256(versions.encode()).hexdigest()[:12]}"
    folder = os.path.join(cache_root(), "lm", "corpus", tag)
    if os.path.isdir(folder):
        return folder
    print(f"lm: no data_dir given; writing the embedded stand-in corpus (Python's documentation "
          f"in WikiText format, NOT WikiText-103) into {folder}", flush=True)
    with atomic_folder(folder, prefix=".standin-", what="the stand-in corpus",
                       hint="set $SPADE_JAX_CACHE to a writable folder") as tmp:
        write(tmp)
        with open(os.path.join(tmp, "SOURCES.json"), "w") as f:
            f.write(versions + "\n")
    return folder


@cli.user_errors
def main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for wiki.{train,valid,test}.tokens")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing wiki.*.tokens files in --out")
    args = parser.parse_args(argv)
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise PathError(f"--out {args.out} is a file; pass a folder (new or existing)")
    names = [f"wiki.{split}.tokens" for split in ("train", "valid", "test")]
    paths.refuse_existing([os.path.join(args.out, name) for name in names], args.overwrite)
    with paths.temp_folder(args.out, ".corpus-", "the corpus", "pass an --out you can write") as tmp:
        write(tmp)
        for name in names:
            paths.publish(os.path.join(tmp, name), os.path.join(args.out, name), tmp)
    for name in names:
        path = os.path.join(args.out, name)
        with open(path, encoding="utf-8") as f:
            tokens = sum(len(line.split()) + 1 for line in f)
        print(f"{path}: {tokens:,} tokens (with one end-of-line token per line)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
