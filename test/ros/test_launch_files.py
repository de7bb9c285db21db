"""Static check of the launch files, without importing launch: parsed with ``ast``.

Every ``Node(package="ssl_nav", executable=...)`` names a console entry point of setup.py that is one of our
nodes, every parameter a launch file sets is declared by that node, every launch file declares
``params_file``, ``namespace`` and ``use_sim_time``, and the sim remaps match sim_bridge's topics.
"""

import ast
from pathlib import Path

import pytest

pytest.importorskip("rclpy")

from ssl_nav.ros.params import node_parameters  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
LAUNCH_FILES = sorted((REPO / "launch").glob("*.launch.py"))
REQUIRED_ARGS = {"params_file", "namespace", "use_sim_time"}
#: parameters every rclpy node declares by itself
BUILTIN_PARAMS = {"use_sim_time", "start_type_description_service"}
#: executable -> node module
NODE_MODULES = {"view_collector": "ssl_nav.ros.view_collector", "finetuner": "ssl_nav.ros.finetuner",
                "retrieval_server": "ssl_nav.ros.retrieval_server", "sim_bridge": "ssl_nav.ros.sim_bridge"}


def entry_points() -> dict[str, str]:
    """console_scripts of setup.py: name -> 'module:function'."""
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "entry_points":
            eps = ast.literal_eval(node.value)
            return dict(tuple(s.replace(" ", "").split("=", 1)) for s in eps["console_scripts"])
    raise AssertionError("setup.py has no entry_points")


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)
            and ((isinstance(n.func, ast.Name) and n.func.id == name)
                 or (isinstance(n.func, ast.Attribute) and n.func.attr == name))]


def _kw(call: ast.Call, name: str):
    return next((k.value for k in call.keywords if k.arg == name), None)


def _const(node):
    return node.value if isinstance(node, ast.Constant) else None


def _module_constants(tree: ast.Module) -> dict[str, ast.AST]:
    out = {}
    for st in tree.body:
        if isinstance(st, ast.Assign) and len(st.targets) == 1 and isinstance(st.targets[0], ast.Name):
            out[st.targets[0].id] = st.value
    return out


def launch_nodes(path: Path) -> list[dict]:
    tree = ast.parse(path.read_text())
    consts = _module_constants(tree)
    nodes = []
    for call in _calls(tree, "Node"):
        params = set()
        plist = _kw(call, "parameters")
        for item in getattr(plist, "elts", []):
            if isinstance(item, ast.Dict):
                for k in item.keys:
                    assert isinstance(k, ast.Constant), f"{path}: parameter names must be literal strings"
                    params.add(k.value)
        remaps = _kw(call, "remappings")
        if isinstance(remaps, ast.Name):
            remaps = consts.get(remaps.id)
        pairs = []
        for item in getattr(remaps, "elts", []):
            if isinstance(item, ast.Tuple):
                pairs.append((_const(item.elts[0]), _const(item.elts[1])))
        nodes.append({"package": _const(_kw(call, "package")), "executable": _const(_kw(call, "executable")),
                      "name": _const(_kw(call, "name")), "params": params, "remaps": dict(pairs)})
    return nodes


def declared_args(path: Path) -> set[str]:
    return {_const(c.args[0]) for c in _calls(ast.parse(path.read_text()), "DeclareLaunchArgument")}


def test_there_are_launch_files():
    assert {p.name for p in LAUNCH_FILES} >= {"ssl_nav.launch.py", "sim_demo.launch.py"}


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_is_consistent_with_setup_and_nodes(path):
    eps = entry_points()
    nodes = launch_nodes(path)
    assert nodes, f"{path.name}: no Node(...) actions"
    assert REQUIRED_ARGS <= declared_args(path), f"{path.name}: missing launch arguments"
    for n in nodes:
        assert n["package"] == "ssl_nav"
        exe = n["executable"]
        assert exe in eps, f"{path.name}: executable {exe!r} is not a console entry point of setup.py"
        assert eps[exe] == f"{NODE_MODULES[exe]}:main", f"{path.name}: {exe} -> {eps[exe]}"
        assert n["name"] == exe, f"{path.name}: node name {n['name']!r} differs from robot.yaml's key {exe!r}"
        declared = set(node_parameters(exe)) | BUILTIN_PARAMS
        unknown = n["params"] - declared
        assert not unknown, f"{path.name}: {exe} does not declare {sorted(unknown)}"
    names = [n["executable"] for n in nodes]
    assert {"view_collector", "finetuner", "retrieval_server"} <= set(names)
    rs = next(n for n in nodes if n["executable"] == "retrieval_server")
    assert rs["remaps"].get("model_ready") == "finetuner/model_ready"


def test_sim_demo_remaps_match_sim_bridge_topics():
    from ssl_nav.ros.sim_bridge import TOPICS

    nodes = launch_nodes(REPO / "launch" / "sim_demo.launch.py")
    vc = next(n for n in nodes if n["executable"] == "view_collector")
    assert vc["remaps"] == TOPICS
    assert "sim_bridge" in [n["executable"] for n in nodes]


def test_the_checker_catches_a_bad_launch_file(tmp_path):
    """The check is not vacuous: an unknown executable and an undeclared parameter are found."""
    bad = tmp_path / "bad.launch.py"
    bad.write_text('from launch_ros.actions import Node\n'
                   'def generate_launch_description():\n'
                   '    return [Node(package="ssl_nav", executable="view_colector", name="view_collector",\n'
                   '                 parameters=[{"views.crop_sise": 64}])]\n')
    n = launch_nodes(bad)[0]
    assert n["executable"] not in entry_points()
    assert "views.crop_sise" not in node_parameters("view_collector")
