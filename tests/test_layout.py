"""The shape of spade_jax/, read from its imports: three packages in layers (runtime at the bottom,
the model above it, the training engine above both), no import circle between any two modules,
and no spade_jax import hidden inside a function (the way circles get dodged). The entry modules
at the top (spade_jax/aot.py, demo.py, local_cluster.py) may import any of them."""
import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "spade_jax")
LAYERS = ("runtime", "model", "train")  # each may import only those before it
ENTRIES = ("spade_jax.aot", "spade_jax.demo", "spade_jax.local_cluster", "spade_jax")


def _modules() -> dict:
    """{module name: path} of every module of spade_jax."""
    out = {}
    for parent, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(parent, name)
                dotted = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                out[dotted.removesuffix(".__init__")] = path
    return out


def _imports(path: str, modules: dict) -> list:
    """[(imported spade_jax module, line, inside a function)] of one file."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            names = []
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                # `from package import module` imports the module (its package is only a
                # namespace here); `from module import name`, the module
                names = [f"{child.module}.{a.name}" if f"{child.module}.{a.name}" in modules
                         else child.module for a in child.names]
            for name in names:
                while name and name not in modules:
                    name = name.rpartition(".")[0]
                if name.startswith("spade_jax"):
                    found.append((name, child.lineno, in_function))
            visit(child, inner)

    visit(tree, False)
    return found


def _graph() -> dict:
    modules = _modules()
    return {name: _imports(path, modules) for name, path in modules.items()}


def _layer(module: str):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def test_the_three_packages_import_only_downwards():
    wrong = []
    for module, imports in _graph().items():
        if module in ENTRIES:
            continue
        mine = LAYERS.index(_layer(module))
        for target, line, _ in imports:
            theirs = _layer(target)
            if target not in ENTRIES and theirs is not None and LAYERS.index(theirs) > mine:
                wrong.append(f"{module} (line {line}) imports {target}")
            if target in ENTRIES and target != "spade_jax":
                wrong.append(f"{module} (line {line}) imports the entry module {target}")
    assert not wrong, "\n".join(wrong)


def test_no_import_circle_and_none_hidden_in_a_function():
    graph = _graph()
    hidden = [f"{m} (line {line}) imports {t} inside a function"
              for m, imports in graph.items() for t, line, inside in imports if inside]
    assert not hidden, "\n".join(hidden)
    edges = {m: {t for t, _, _ in imports if t != m and t != "spade_jax"}
             for m, imports in graph.items()}
    state, stack = {}, []

    def visit(node):  # depth-first search; a grey node met again closes a circle
        state[node] = "grey"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "grey":
                raise AssertionError("import circle: " + " -> ".join(
                    stack[stack.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "black"

    for node in sorted(edges):
        if node not in state:
            visit(node)
