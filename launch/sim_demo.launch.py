"""ssl_nav with the embedded simulator: sim_bridge publishes RealSense-style camera topics and a camera pose.

    ros2 launch ssl_nav sim_demo.launch.py params_file:=/path/robot.yaml namespace:=demo use_sim_time:=false

Then: ``ros2 service call /<ns>/view_collector/save std_srvs/srv/Trigger``, ``.../retrieval_server/reload``
(baseline index), ``.../finetuner/start`` (the retrieval server hot-reloads on ``model_ready``), and send a photo
with ``python -m ssl_nav.ros.query_client PHOTO``. ``ssl-nav ros-stack --with-sim`` runs this loop by itself.
"""

import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from ssl_nav.ros.dds_profile import default_profile_env

#: sim_bridge's driver-style topics -> view_collector inputs (as ssl_nav.ros.sim_bridge.TOPICS)
SIM_REMAPS = [
    ("rgb", "camera/color/image_raw"),
    ("depth", "camera/aligned_depth_to_color/image_raw"),
    ("camera_info", "camera/color/camera_info"),
    ("instance_mask", "camera/instance_mask"),
    ("camera_pose", "camera/pose"),
]


def generate_launch_description():
    params_file = LaunchConfiguration("params_file")
    namespace = LaunchConfiguration("namespace")
    use_sim_time = ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool)
    args = [
        DeclareLaunchArgument("params_file",
                              default_value=PathJoinSubstitution([FindPackageShare("ssl_nav"), "config", "robot.yaml"]),
                              description="ROS 2 parameters file (ros__parameters per node)"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of every ssl_nav node"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock"),
        DeclareLaunchArgument("sim_loop", default_value="true",
                              description="repeat the exploration trajectory (a live stream for RViz)"),
    ]
    sim_bridge = Node(
        package="ssl_nav", executable="sim_bridge", name="sim_bridge", namespace=namespace, output="screen",
        parameters=[params_file, {"use_sim_time": use_sim_time,
                                  "ros.sim_loop": ParameterValue(LaunchConfiguration("sim_loop"), value_type=bool)}],
    )
    view_collector = Node(
        package="ssl_nav", executable="view_collector", name="view_collector", namespace=namespace,
        output="screen", parameters=[params_file, {"use_sim_time": use_sim_time}], remappings=SIM_REMAPS,
    )
    finetuner = Node(
        package="ssl_nav", executable="finetuner", name="finetuner", namespace=namespace, output="screen",
        parameters=[params_file, {"use_sim_time": use_sim_time}],
    )
    retrieval_server = Node(
        package="ssl_nav", executable="retrieval_server", name="retrieval_server", namespace=namespace,
        output="screen", parameters=[params_file, {"use_sim_time": use_sim_time}],
        remappings=[("model_ready", "finetuner/model_ready")],
    )
    # config/fastdds_large_data.xml for every process of this launch when discovery is host-only and the user
    # chose no profile (ssl_nav/ros/dds_profile.py, docs/ros.md)
    dds_profile = [SetEnvironmentVariable(k, v) for k, v in default_profile_env(os.environ).items()]
    return LaunchDescription(args + dds_profile + [sim_bridge, view_collector, finetuner, retrieval_server])
