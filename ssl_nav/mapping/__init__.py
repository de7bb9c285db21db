"""3D instance map: per-instance point sets fused from RGB-D frames (open3d), PLY with an ``instance`` field."""

from ssl_nav.mapping.instance_map import InstanceInfo, InstanceMap

__all__ = ["InstanceInfo", "InstanceMap"]
