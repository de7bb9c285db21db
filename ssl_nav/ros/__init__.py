"""ROS 2 interface of ssl_nav: the only package that imports rclpy or ``*_msgs`` (docs/ros.md).

Modules:

- :mod:`~ssl_nav.ros.conversions`: messages <-> numpy (Image, CompressedImage, CameraInfo, PoseStamped,
  PointCloud2, MarkerArray), raising :class:`~ssl_nav.errors.SslNavError` subclasses that name the topic/field;
- :mod:`~ssl_nav.ros.params`: node parameters declared from the config dataclasses (``<section>.<field>``);
- :mod:`~ssl_nav.ros.sync`: stamp synchronisation of the camera streams (no message_filters needed);
- :mod:`~ssl_nav.ros.runtime`: data directory layout, QoS profiles, JSON messages, the nodes' ``main()``;
- one node per file: :mod:`~ssl_nav.ros.view_collector`, :mod:`~ssl_nav.ros.finetuner`,
  :mod:`~ssl_nav.ros.retrieval_server`, :mod:`~ssl_nav.ros.sim_bridge`;
- :mod:`~ssl_nav.ros.stack`: every node in one process (``ssl-nav ros-stack``);
- :mod:`~ssl_nav.ros.query_client`: send a photo, print the goal pose.

Nodes are thin: they convert messages at the edge and call the same functions as the CLI.
"""
