"""The large-data Fast DDS profile as the default: when it is set, when the user's choice is kept, where the XML
is found (source checkout, colcon share directory, pip prefix), and that the launch files add it."""

import ast
from pathlib import Path

import pytest

from ssl_nav.ros import dds_profile
from ssl_nav.ros.dds_profile import PROFILE_ENV, default_profile_env, profile_path, use_default_profile

REPO = Path(__file__).resolve().parents[2]
LOCAL = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}


def test_the_profile_is_added_only_when_the_user_chose_none_on_a_host_only_setup():
    xml = str(REPO / "config" / "fastdds_large_data.xml")
    assert default_profile_env(dict(LOCAL)) == {PROFILE_ENV: xml}
    assert default_profile_env({"ROS_LOCALHOST_ONLY": "1"}) == {PROFILE_ENV: xml}
    assert default_profile_env({**LOCAL, "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp"}) == {PROFILE_ENV: xml}
    for env in ({**LOCAL, PROFILE_ENV: "/mine.xml"},
                {**LOCAL, PROFILE_ENV: ""},  # an empty value: Fast DDS's own defaults, on purpose
                {**LOCAL, "FASTRTPS_DEFAULT_PROFILES_FILE": "/old_name.xml"},
                {**LOCAL, "RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"},
                {},  # SUBNET (the ROS default): the profile's loopback-only UDP would cut other machines off
                {"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"}):
        assert default_profile_env(env) == {}, env
    env = {**LOCAL, PROFILE_ENV: "/mine.xml"}
    assert use_default_profile(env) is None and env[PROFILE_ENV] == "/mine.xml"
    env = dict(LOCAL)
    assert use_default_profile(env) == xml and env[PROFILE_ENV] == xml


def test_the_xml_is_found_where_colcon_and_pip_install_it(tmp_path, monkeypatch):
    monkeypatch.setattr(dds_profile, "__file__", str(tmp_path / "site" / "ssl_nav" / "ros" / "dds_profile.py"))
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path / "colcon"))
    monkeypatch.setattr(dds_profile.sys, "prefix", str(tmp_path / "pip"))
    assert profile_path() is None and default_profile_env(dict(LOCAL)) == {}
    data_files = dict(_setup_data_files())
    assert "config/*.xml" in data_files["share/ssl_nav/config"]
    pip_xml = tmp_path / "pip" / "share" / "ssl_nav" / "config" / "fastdds_large_data.xml"
    pip_xml.parent.mkdir(parents=True)
    pip_xml.write_text("<dds/>")
    assert profile_path() == pip_xml
    colcon = tmp_path / "colcon" / "share"
    (colcon / "ament_index" / "resource_index" / "packages").mkdir(parents=True)
    (colcon / "ament_index" / "resource_index" / "packages" / "ssl_nav").write_text("")
    (colcon / "ssl_nav" / "config").mkdir(parents=True)
    (colcon / "ssl_nav" / "config" / "fastdds_large_data.xml").write_text("<dds/>")
    pytest.importorskip("ament_index_python")
    assert profile_path() == colcon / "ssl_nav" / "config" / "fastdds_large_data.xml"


def _setup_data_files() -> list[tuple[str, str]]:
    """setup.py's data_files as (destination, source glob) pairs, read with ``ast``."""
    tree = ast.parse((REPO / "setup.py").read_text())
    kw = next(n for n in ast.walk(tree) if isinstance(n, ast.keyword) and n.arg == "data_files")
    pairs = []
    for t in kw.value.elts:
        dest = ast.unparse(t.elts[0]).strip("f'\"").replace("{PACKAGE}", "ssl_nav")
        for c in ast.walk(t.elts[1]):
            if isinstance(c, ast.Call) and getattr(c.func, "id", "") == "glob":
                pairs.append((dest, c.args[0].value))
    return [(d, " ".join(s for dd, s in pairs if dd == d)) for d, _ in pairs]


@pytest.mark.parametrize("path", sorted((REPO / "launch").glob("*.launch.py")), ids=lambda p: p.name)
def test_launch_files_set_the_default_profile_before_their_nodes(path):
    """Static (launch_ros is not needed to run the tests): the launch description starts with the
    ``SetEnvironmentVariable`` actions of :func:`default_profile_env` of the launching environment."""
    src = path.read_text()
    tree = ast.parse(src)
    ret = next(n for n in ast.walk(tree) if isinstance(n, ast.Return))
    parts = []
    node = ret.value.args[0]
    while isinstance(node, ast.BinOp):
        parts.insert(0, node.right)
        node = node.left
    parts.insert(0, node)
    names = [p.id if isinstance(p, ast.Name) else "nodes" for p in parts]
    assert names == ["args", "dds_profile", "nodes"], f"{path.name}: {names}"
    comp = next(n.value for n in ast.walk(tree) if isinstance(n, ast.Assign)
                and getattr(n.targets[0], "id", "") == "dds_profile")
    assert "SetEnvironmentVariable(k, v)" in ast.unparse(comp.elt)
    assert ast.unparse(comp.generators[0].iter) == "default_profile_env(os.environ).items()"
