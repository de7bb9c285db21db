"""ament_python package setup: works with `pip install -e .` and with `colcon build`."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "ssl_nav"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*", "benchmarks"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
        # the ImageNet weights scripts/setup.sh puts in models/: found there by an installed package
        # (ssl_nav.learning.backbones looks in <prefix>/share/ssl_nav/models)
        (f"share/{PACKAGE}/models", glob("models/*.pth")),
    ],
    python_requires=">=3.10",
    install_requires=["setuptools", "numpy", "pyyaml"],
    zip_safe=True,
    maintainer="ssl_nav developers",
    maintainer_email="ssl-nav@example.org",
    description="Self-supervised instance retrieval for robot navigation (SimView + CrossIA) on ROS 2.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "ssl-nav = ssl_nav.cli:main",
            "view_collector = ssl_nav.ros.view_collector:main",
            "finetuner = ssl_nav.ros.finetuner:main",
            "retrieval_server = ssl_nav.ros.retrieval_server:main",
            "sim_bridge = ssl_nav.ros.sim_bridge:main",
            "query_client = ssl_nav.ros.query_client:main",
        ],
    },
)
