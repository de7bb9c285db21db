"""ssl_nav on a robot: view_collector, finetuner and retrieval_server.

    ros2 launch ssl_nav ssl_nav.launch.py params_file:=/path/robot.yaml namespace:=robot1 use_sim_time:=false \
        rgb_topic:=/camera/camera/color/image_raw depth_topic:=/camera/camera/aligned_depth_to_color/image_raw \
        camera_info_topic:=/camera/camera/color/camera_info pose_topic:=/camera_pose

The camera defaults are RealSense-style (realsense2_camera with align_depth); ``pose_topic`` is a PoseStamped of
the camera optical frame in the map frame (see README "On a robot" for a TF relay). The retrieval server's
``model_ready`` is remapped onto the finetuner's latched ``~/model_ready``.
"""

import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from ssl_nav.ros.dds_profile import default_profile_env


def generate_launch_description():
    params_file = LaunchConfiguration("params_file")
    namespace = LaunchConfiguration("namespace")
    use_sim_time = ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool)
    args = [
        DeclareLaunchArgument("params_file",
                              default_value=PathJoinSubstitution([FindPackageShare("ssl_nav"), "config", "robot.yaml"]),
                              description="ROS 2 parameters file (ros__parameters per node)"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of every ssl_nav node"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock (bag replay, simulators)"),
        DeclareLaunchArgument("rgb_topic", default_value="camera/color/image_raw",
                              description="colour image (rgb8/bgr8)"),
        DeclareLaunchArgument("depth_topic", default_value="camera/aligned_depth_to_color/image_raw",
                              description="depth aligned to colour (16UC1 mm or 32FC1 m)"),
        DeclareLaunchArgument("camera_info_topic", default_value="camera/color/camera_info",
                              description="CameraInfo of the colour image"),
        DeclareLaunchArgument("pose_topic", default_value="camera_pose",
                              description="PoseStamped of the camera optical frame in the map frame"),
        DeclareLaunchArgument("mask_topic", default_value="instance_mask",
                              description="instance mask (32SC1/16UC1) from your segmenter"),
        DeclareLaunchArgument("semantic_map_topic", default_value="semantic_map",
                              description="PointCloud2 with an 'instance' field (optional)"),
        DeclareLaunchArgument("query_topic", default_value="query_image", description="query photos (Image)"),
    ]
    view_collector = Node(
        package="ssl_nav", executable="view_collector", name="view_collector", namespace=namespace,
        output="screen", parameters=[params_file, {"use_sim_time": use_sim_time}],
        remappings=[("rgb", LaunchConfiguration("rgb_topic")), ("depth", LaunchConfiguration("depth_topic")),
                    ("camera_info", LaunchConfiguration("camera_info_topic")),
                    ("camera_pose", LaunchConfiguration("pose_topic")),
                    ("instance_mask", LaunchConfiguration("mask_topic")),
                    ("semantic_map", LaunchConfiguration("semantic_map_topic"))],
    )
    finetuner = Node(
        package="ssl_nav", executable="finetuner", name="finetuner", namespace=namespace, output="screen",
        parameters=[params_file, {"use_sim_time": use_sim_time}],
    )
    retrieval_server = Node(
        package="ssl_nav", executable="retrieval_server", name="retrieval_server", namespace=namespace,
        output="screen", parameters=[params_file, {"use_sim_time": use_sim_time}],
        remappings=[("model_ready", "finetuner/model_ready"),
                    ("query_image", LaunchConfiguration("query_topic")),
                    ("query_image/compressed", [LaunchConfiguration("query_topic"), "/compressed"])],
    )
    # config/fastdds_large_data.xml for every process of this launch when discovery is host-only and the user
    # chose no profile (ssl_nav/ros/dds_profile.py, docs/ros.md)
    dds_profile = [SetEnvironmentVariable(k, v) for k, v in default_profile_env(os.environ).items()]
    return LaunchDescription(args + dds_profile + [view_collector, finetuner, retrieval_server])
