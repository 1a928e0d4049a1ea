"""Every rule has a conda env, and each env lists every third-party package its rule imports.

The imports are followed from the CLI step a rule runs (``python -m landtaxa <step>``)
through the package's own modules, so adding an import to a module without adding its
package to the env of every rule that reaches it fails this test.
"""

from __future__ import annotations

import ast
import re
import shutil
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "workflow" / "landtaxa"
# import name -> conda package name, where they differ
CONDA_NAME = {"torch": "pytorch", "sklearn": "scikit-learn", "yaml": "pyyaml", "matplotlib": "matplotlib-base"}
# packages that come with another one listed in the env (a hard dependency of it)
COMES_WITH = {"affine": "rasterio"}


def rule_blocks() -> dict[str, str]:
    blocks = {}
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        parts = re.split(r"^rule (\w+):\n", smk.read_text(), flags=re.M)
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            blocks[name] = body
    return blocks


def env_packages(path: Path) -> set[str]:
    deps = yaml.safe_load(path.read_text())["dependencies"]
    return {re.split(r"[\s=<>]", d.strip())[0] for d in deps if isinstance(d, str)}


def _names(node: ast.AST) -> set[str]:
    """What one import statement names; ``from landtaxa.x import y`` names ``landtaxa.x.y`` too, which
    is a module when ``y`` is one."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names}
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        subs = {f"{node.module}.{a.name}" for a in node.names} if node.module.startswith("landtaxa") else set()
        return {node.module} | subs
    return set()


def imports_of(tree: ast.AST) -> set[str]:
    return {name for node in ast.walk(tree) for name in _names(node)}


def module_file(module: str, package: Path = PACKAGE) -> Path | None:
    """The source file of a landtaxa module or subpackage (None for a name that is not a module)."""
    path = package.joinpath(*module.split(".")[1:])
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    return path / "__init__.py" if (path / "__init__.py").is_file() else None


def _imports_outside_steps(tree: ast.Module) -> set[str]:
    """A module's imports, at its top and in its functions, but not in the bodies of its steps
    (``*_step``): a step's own imports count only for that step."""
    steps = [f for f in tree.body if isinstance(f, ast.FunctionDef) and f.name.endswith("_step")]
    step_nodes = {id(n) for f in steps for n in ast.walk(f)}
    return {name for node in ast.walk(tree) if id(node) not in step_nodes for name in _names(node)}


def step_imports(step: str, package: Path = PACKAGE) -> set[str]:
    """Top-level third-party modules a step reaches: cli.py's imports, the step function's own, and,
    for every landtaxa module reached, its imports (see :func:`_imports_outside_steps`)."""
    from landtaxa.cli import STEPS

    module, name = STEPS[step].split(":")
    tree = ast.parse(module_file(module, package).read_text())
    fn = next(f for f in tree.body if isinstance(f, ast.FunctionDef) and f.name == name)
    start = imports_of(ast.parse((package / "cli.py").read_text())) | imports_of(fn) | {module}
    third, modules, todo = set(), set(), sorted(start)
    while todo:
        mod = todo.pop()
        top = mod.split(".")[0]
        if top == "landtaxa":
            source = module_file(mod, package)
            if mod in modules or source is None:
                continue
            modules.add(mod)
            todo += sorted(_imports_outside_steps(ast.parse(source.read_text())))
        elif top not in sys.stdlib_module_names and top != "__future__":
            third.add(top)
    return third


def missing_in_env(step: str, env: set[str], package: Path = PACKAGE) -> set[str]:
    missing = set()
    for name in step_imports(step, package):
        conda = CONDA_NAME.get(name, name)
        if conda not in env and COMES_WITH.get(name) not in env:
            missing.add(conda)
    return missing


RULES = rule_blocks()


def test_rules_found() -> None:
    assert {"grid", "align", "train", "refine", "untrained", "embed", "series", "clusters", "map"} <= set(RULES)


@pytest.mark.parametrize("rule", sorted(RULES))
def test_rule_env_lists_its_imports(rule: str) -> None:
    body = RULES[rule]
    conda = re.search(r'conda:\s*\n\s*"([^"]+)"', body)
    assert conda, f"rule {rule} has no conda: environment"
    env_file = (REPO / "workflow" / "rules" / conda.group(1)).resolve()
    assert env_file.parent == REPO / "envs", f"rule {rule}: env {env_file} is not in envs/"
    env = env_packages(env_file)
    assert "python" in env
    steps = re.findall(r"python -m landtaxa (\w+)", body)
    assert steps, f"rule {rule} does not run a landtaxa step"
    for step in steps:
        missing = missing_in_env(step, env)
        assert not missing, f"rule {rule} (landtaxa {step}) imports {sorted(missing)} missing from {env_file.name}"


def test_env_files_are_pinned() -> None:
    for env_file in sorted((REPO / "envs").glob("*.yaml")):
        spec = yaml.safe_load(env_file.read_text())
        assert "conda-forge" in spec["channels"], env_file
        for dep in spec["dependencies"]:
            assert re.match(r"^[\w.-]+ =\d", dep), f"{env_file.name}: {dep!r} is not pinned"


def test_check_fails_when_an_import_lacks_its_env_entry(tmp_path: Path) -> None:
    """The check is not vacuous: a new import in a module shows up as missing."""
    copy = tmp_path / "landtaxa"
    shutil.copytree(PACKAGE, copy)
    series = copy / "clustering" / "series.py"
    series.write_text(series.read_text().replace("import numpy as np\n", "import numpy as np\nimport pandas\n", 1))
    env = env_packages(REPO / "envs" / "io.yaml") - {"pandas"}
    assert missing_in_env("series", env, package=PACKAGE) == set()
    assert missing_in_env("series", env, package=copy) == {"pandas"}
    torch_env = env_packages(REPO / "envs" / "torch.yaml")
    assert missing_in_env("embed", torch_env - {"pytorch"}) == {"pytorch"}
