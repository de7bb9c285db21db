"""ssl_nav: self-supervised instance retrieval for robot navigation (SimView + CrossIA on ROS 2).

Importing ssl_nav never imports rclpy; only :mod:`ssl_nav.ros` does.
"""

__version__ = "0.1.0"
