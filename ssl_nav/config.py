"""One place for every configuration value of ssl_nav.

Each pipeline stage has one dataclass. ``config/pipeline.yaml`` mirrors
:class:`PipelineConfig` (``ssl-nav config dump`` regenerates it), ROS
parameters are declared from the same dataclasses (``ssl_nav/ros/params.py``),
and CLI flags override single fields. Field metadata carries the help text,
the allowed choices and the numeric range, so YAML validation, ROS parameter
descriptors and ``--help`` all read the same facts.

Fields are scalars (int, float, bool, str, optional str) so that each maps to
one ROS parameter.
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ssl_nav.errors import ConfigError


def _f(default: Any, help: str, choices: tuple | None = None, range: tuple | None = None) -> Any:
    """A dataclass field with help text, optional choices and optional numeric range."""
    meta: dict[str, Any] = {"help": help}
    if choices is not None:
        meta["choices"] = choices
    if range is not None:
        meta["range"] = range
    return field(default=default, metadata=meta)


@dataclass
class SimConfig:
    """Embedded simulator (pybullet) and simulated episodes."""

    backend: str = _f("pybullet", "simulator backend", choices=("pybullet", "habitat"))
    seed: int = _f(0, "scene / trajectory seed", range=(0, 2**31 - 1))
    width: int = _f(640, "image width in pixels", range=(16, 4096))
    height: int = _f(480, "image height in pixels", range=(16, 4096))
    hfov_deg: float = _f(70.0, "horizontal field of view of the robot camera (degrees)", range=(10.0, 170.0))
    camera_height_min: float = _f(1.0, "lowest robot camera height (m)", range=(0.1, 3.0))
    camera_height_max: float = _f(1.3, "highest robot camera height (m)", range=(0.1, 3.0))
    n_objects_min: int = _f(12, "fewest object instances placed in a scene", range=(1, 200))
    n_objects_max: int = _f(20, "most object instances placed in a scene", range=(1, 200))
    n_twins: int = _f(3, "recoloured twins placed as hard negatives", range=(0, 50))
    n_distractors: int = _f(4, "distractor objects (not goals)", range=(0, 50))
    n_open_set: int = _f(3, "open-set episodes whose object is never placed in the scene", range=(0, 50))
    n_explore_positions: int = _f(9, "exploration positions spread over the free floor", range=(1, 400))
    n_turn_steps: int = _f(8, "panoramic turn steps at each exploration position", range=(1, 72))
    n_user_photos: int = _f(3, "high-quality user photos per instance (CrossIA allows at most 5)", range=(0, 5))
    n_queries_per_instance: int = _f(1, "query photos (episodes) per goal instance", range=(0, 20))
    lq_blur_max_px: int = _f(9, "longest motion-blur kernel of low-quality robot frames (px)", range=(0, 64))
    lq_downscale: float = _f(0.5, "down-and-up scale factor of low-quality frames", range=(0.05, 1.0))
    lq_noise_std: float = _f(4.0, "Gaussian sensor noise of low-quality frames (uint8 levels)", range=(0.0, 64.0))
    depth_noise_std: float = _f(0.0, "Gaussian depth noise (m)", range=(0.0, 1.0))
    max_depth: float = _f(8.0, "far clipping distance (m)", range=(0.5, 100.0))
    # embedded pybullet backend
    camera_pitch_deg: float = _f(20.0, "downward pitch of the robot camera (degrees)", range=(-60.0, 80.0))
    frame_rate_hz: float = _f(5.0, "frame rate of the simulated trajectory; stamp = frame index / rate",
                              range=(0.1, 1000.0))
    room_size_min: float = _f(5.0, "shortest side of the procedural room (m)", range=(3.0, 30.0))
    room_size_max: float = _f(7.0, "longest side of the procedural room (m)", range=(3.0, 30.0))
    object_size_min: float = _f(0.15, "smallest longest side of an object (m)", range=(0.02, 2.0))
    object_size_max: float = _f(0.45, "largest longest side of an object (m)", range=(0.02, 2.0))
    robot_radius: float = _f(0.3, "clearance of navigable points from walls, furniture and floor objects (m)",
                             range=(0.0, 2.0))
    photo_distance_min: float = _f(1.3, "nearest user-photo camera distance to the object centre, in multiples of "
                                   "the object's longest side", range=(0.5, 50.0))
    photo_distance_max: float = _f(2.0, "farthest user-photo camera distance to the object centre, in multiples of "
                                   "the object's longest side", range=(0.5, 50.0))
    goal_distance_min: float = _f(2.3, "nearest goal-image camera distance to the object centre, in multiples of "
                                  "the object's longest side (farther than the user photos)", range=(0.5, 50.0))
    goal_distance_max: float = _f(3.6, "farthest goal-image camera distance to the object centre, in multiples of "
                                  "the object's longest side", range=(0.5, 50.0))
    room_shell: str = _f("raycast", "how the room's floor, walls and ceiling are drawn: ray-cast in numpy (fast) or "
                         "as pybullet boxes rasterised by TinyRenderer (the slow reference)",
                         choices=("raycast", "tinyrenderer"))
    # scene content: products, look-alikes, the calibration split (docs/simulator.md)
    n_products: int = _f(0, "goal objects that are procedurally textured product packages (boxes, cans, bottles "
                         "with brand, variant, logo, barcode) instead of pybullet_data models", range=(0, 50))
    n_lookalikes: int = _f(0, "open-set look-alikes: objects never placed in the mapped room that look like a goal "
                           "object (the same mesh recoloured or retextured, or a near-identical product)",
                           range=(0, 50))
    n_calibration_queries_per_instance: int = _f(
        1, "calibration split (calibration.jsonl): queries per goal instance from other viewpoints, plus as many "
           "open-set objects as the test split (unrelated and look-alikes), disjoint from it; 0 = no split",
        range=(0, 20))
    # segmentation hard cases (docs/simulator.md)
    hard_cases: bool = _f(False, "add segmentation hard cases: objects touching goal objects, clutter on one table, "
                                 "thin and flat objects, small objects, objects stacked on others")
    hard_touching: int = _f(3, "hard cases: objects placed touching a goal object", range=(0, 50))
    hard_touch_gap: float = _f(0.002, "hard cases: largest gap between the footprints of touching objects (m)",
                               range=(0.0, 0.05))
    hard_clutter: int = _f(6, "hard cases: objects crowded onto one table", range=(0, 50))
    hard_clutter_margin: float = _f(0.01, "hard cases: smallest footprint gap within the clutter (m)", range=(0.0, 0.2))
    hard_thin_flat: int = _f(4, "hard cases: thin and flat objects (books, plates, cards, pens, boards, mats)",
                             range=(0, 50))
    hard_small: int = _f(4, "hard cases: small objects (dice, batteries, matchboxes, erasers, caps)", range=(0, 50))
    hard_small_size_min: float = _f(0.02, "hard cases: shortest longest side of a small object (m)", range=(0.005, 0.5))
    hard_small_size_max: float = _f(0.07, "hard cases: longest longest side of a small object (m)", range=(0.005, 0.5))
    hard_stacked: int = _f(2, "hard cases: small objects resting on top of a book or a box", range=(0, 50))
    # robot depth (LQ frames)
    depth_model: str = _f("ideal", "robot depth: ideal (plus depth_noise_std) or realsense (active stereo: noise "
                                   "growing with z^2, disparity quantisation, holes at depth edges, stereo shadows, "
                                   "on dark and specular surfaces, range limits)", choices=("ideal", "realsense"))
    depth_baseline_m: float = _f(0.05, "realsense depth: stereo baseline (m; D435: 0.05)", range=(0.005, 1.0))
    depth_disparity_noise_px: float = _f(0.08, "realsense depth: disparity noise std (px); depth noise is "
                                               "z^2 / (fx * baseline) times this", range=(0.0, 5.0))
    depth_disparity_step_px: float = _f(0.03125, "realsense depth: disparity quantisation step (px; D435 subpixel "
                                                 "1/32)", range=(0.0, 1.0))
    depth_min_m: float = _f(0.2, "realsense depth: nearest valid depth (m)", range=(0.0, 10.0))
    depth_max_m: float = _f(6.0, "realsense depth: farthest valid depth (m)", range=(0.1, 100.0))
    depth_edge_px: int = _f(1, "realsense depth: pixels invalidated on each side of a depth discontinuity",
                            range=(0, 32))
    depth_dark_level: float = _f(25.0, "realsense depth: surfaces darker than this grey level (0-255) lose depth",
                                 range=(0.0, 255.0))
    depth_specular_level: float = _f(250.0, "realsense depth: highlights at or above this grey level lose depth",
                                     range=(0.0, 256.0))
    depth_dropout: float = _f(0.003, "realsense depth: probability of an isolated invalid pixel", range=(0.0, 1.0))
    # Habitat backend (habitat-lab InstanceImageNav HM3D v2 defaults; see ssl_nav/sim/habitat_spec.py)
    habitat_gpu_id: int = _f(0, "Habitat: GPU device id of the renderer", range=(0, 64))
    habitat_width: int = _f(360, "Habitat: RGB width (px; InstanceImageNav HM3D v2: 360)", range=(16, 4096))
    habitat_height: int = _f(640, "Habitat: RGB height (px; InstanceImageNav HM3D v2: 640)", range=(16, 4096))
    habitat_hfov_deg: float = _f(42.0, "Habitat: RGB and semantic horizontal field of view (degrees)",
                                 range=(10.0, 170.0))
    habitat_depth_hfov_deg: float = _f(58.0, "Habitat: depth sensor hfov (degrees); resampled onto the RGB pixels",
                                       range=(10.0, 170.0))
    habitat_min_depth: float = _f(0.5, "Habitat: nearest valid depth (m); nearer reads invalid", range=(0.0, 100.0))
    habitat_max_depth: float = _f(5.0, "Habitat: farthest valid depth (m); farther reads invalid", range=(0.1, 100.0))
    habitat_sensor_height: float = _f(1.31, "Habitat: camera height above the agent's floor point (m)",
                                      range=(0.1, 3.0))
    habitat_agent_height: float = _f(1.41, "Habitat: agent (navmesh) height (m)", range=(0.1, 3.0))
    habitat_agent_radius: float = _f(0.17, "Habitat: agent (navmesh) radius (m)", range=(0.01, 2.0))
    habitat_scenes_dir: str = _f("data/scene_datasets", "Habitat: directory episode scene ids are relative to")
    habitat_ignore_categories: str = _f(
        "unknown,wall,floor,ceiling,door frame,window frame,stairs,stair,railing,beam,column,misc,void,objects",
        "Habitat: semantic categories that are not object instances (comma-separated, case-insensitive)")
    success_distance: float = _f(1.0, "goal success: the chosen goal within this distance of the goal's view "
                                      "points or object (m)", range=(0.0, 100.0))
    hard_solid_furniture: int = _f(2, "hard cases: solid furniture without legs standing on the floor (cabinets, "
                                      "crates) with objects on top", range=(0, 10))


@dataclass
class MappingConfig:
    """3D instance map (open3d)."""

    voxel_size: float = _f(0.02, "voxel size of each instance point set (m)", range=(0.001, 1.0))
    id_mode: str = _f("stable", "instance ids in masks are 'stable' (sim, Habitat) or 'per_frame' (2D segmenter)",
                      choices=("stable", "per_frame"))
    association_iou: float = _f(0.25, "voxel IoU above which a per-frame mask joins a map instance", range=(0.0, 1.0))
    merge_iou: float = _f(0.5, "voxel IoU above which two map instances merge", range=(0.0, 1.0))
    min_depth: float = _f(0.1, "nearest usable depth (m)", range=(0.0, 100.0))
    max_depth: float = _f(6.0, "farthest usable depth (m)", range=(0.1, 100.0))
    outlier_nb_neighbors: int = _f(16, "statistical outlier removal: neighbours", range=(1, 200))
    outlier_std_ratio: float = _f(2.5, "statistical outlier removal: std ratio", range=(0.1, 20.0))
    min_points: int = _f(30, "instances with fewer points are ignored", range=(1, 1_000_000))
    max_points_per_instance: int = _f(20000, "voxel size grows for instances above this many points", range=(100, 10_000_000))
    segmenter: str = _f("auto", "where map instances come from: 'masks' (the frames' instance masks: simulator or "
                        "2D segmenter), 'semantic_map' (an external labelled cloud, mapping.semantic_map), "
                        "'geometric' (3D segmentation of the fused depth, no masks, no weights); 'auto' = masks when "
                        "the frames carry them, else geometric",
                        choices=("auto", "masks", "semantic_map", "geometric"))
    semantic_map: str | None = _f(None, "segmenter semantic_map: PLY/PCD file or saved map directory with an "
                                  "instance label per point")
    geometric_stride: int = _f(2, "geometric: sample every N-th depth pixel (2 at 640x480 keeps ~1 sample per "
                               "voxel at 3 m)", range=(1, 16))
    geometric_min_hits: int = _f(1, "geometric: depth samples a voxel needs to count as occupied", range=(1, 1000))
    geometric_normal_tolerance_deg: float = _f(20.0, "geometric: largest tilt of a horizontal (or vertical) "
                                               "surface normal (degrees)", range=(1.0, 45.0))
    geometric_plane_tolerance: float = _f(0.02, "geometric: distance within which a voxel belongs to a support, "
                                          "ceiling or wall plane (m)", range=(0.001, 0.5))
    geometric_min_support_area: float = _f(0.1, "geometric: smallest area of a support surface (table top, shelf "
                                           "board, floor) (m^2)", range=(0.001, 100.0))
    geometric_min_support_extent: float = _f(0.5, "geometric: smallest longest side of a support surface (m); "
                                             "planar runs this long are structure too (legs, board edges): "
                                             "objects must be smaller", range=(0.01, 100.0))
    geometric_min_wall_area: float = _f(0.5, "geometric: smallest area of a vertical plane removed as a wall (m^2)",
                                        range=(0.01, 1000.0))
    geometric_max_object_size: float = _f(1.2, "geometric: segments larger than this along any axis are structure "
                                          "(m)", range=(0.05, 100.0))
    geometric_max_support_gap: float = _f(0.06, "geometric: largest gap between a segment's lowest voxel and the "
                                          "support under it (m)", range=(0.0, 2.0))
    geometric_support_reach: float = _f(0.15, "geometric: a segment stands on something when its base lies within "
                                        "this distance of the top of a support, ledge or board edge (m)",
                                        range=(0.0, 5.0))
    geometric_support_thickness: float = _f(0.04, "geometric: thickness below a support's top surface that is the "
                                            "support itself (table top, shelf board) (m)", range=(0.0, 1.0))
    geometric_resegment_every: int = _f(10, "geometric, streaming: re-segment the map after this many new frames "
                                        "when asked for it", range=(1, 100000))
    geometric_tight_boxes: bool = _f(True, "geometric: an instance's box reaches down to the support it rests on "
                                     "and takes back the voxels of its foot that the support's band removed")
    geometric_split: str = _f("colour+concave", "geometric: split a segment at colour and concave (LCCP-style) "
                              "boundaries into parts side by side ('none': off)",
                              choices=("none", "colour", "concave", "colour+concave"))
    geometric_split_colour: float = _f(20.0, "geometric: CIELAB colour difference (lightness halved) across which "
                                       "neighbouring voxels of a segment may be split", range=(1.0, 200.0))
    geometric_split_concave_deg: float = _f(30.0, "geometric: smallest angle between the normals of neighbouring "
                                            "voxels on a concave boundary where a segment may be split (degrees)",
                                            range=(1.0, 90.0))
    geometric_split_overlap: float = _f(0.5, "geometric: parts of a split are one object when more than this "
                                        "fraction of either lies (in top view) within the convex hull of the "
                                        "other (a logo, a band, a head on a body)", range=(0.0, 1.0))
    geometric_flat_objects: bool = _f(True, "geometric: a one-level horizontal sheet a few cm above a support is the "
                                      "top of a flat object lying on it (a book, a box on its side), not a plane "
                                      "fragment")
    geometric_solid_furniture: bool = _f(True, "geometric: a segment standing on the floor that reaches up to the "
                                         "top of a support over it is furniture (a solid cabinet or crate, the "
                                         "panels of a shelf), and a one-voxel-thin upright strip is a panel's edge")


@dataclass
class ViewsConfig:
    """SimView view extraction and selection."""

    crop_size: int = _f(224, "side of stored square crops (px)", range=(16, 1024))
    margin: float = _f(0.1, "margin added around the instance box, as a fraction of its longer side", range=(0.0, 2.0))
    occlusion_tolerance: float = _f(0.05, "map point counts as visible when within this depth of the frame's depth (m)",
                                    range=(0.0, 1.0))
    min_visible_points: int = _f(15, "fewest visible map points for a view", range=(1, 1_000_000))
    min_box_px: int = _f(24, "smallest box side (px)", range=(1, 4096))
    min_visible_fraction: float = _f(0.25, "smallest visible fraction of the instance's points in view", range=(0.0, 1.0))
    max_truncation: float = _f(0.5, "largest fraction of the square crop outside the image", range=(0.0, 1.0))
    min_sharpness: float = _f(0.0, "smallest variance of the Laplacian", range=(0.0, 1e9))
    min_purity: float = _f(0.55, "smallest share of the object pixels in a crop that belong to its instance "
                                "(estimated from the visible map points; above 0.5 the instance is the majority)",
                           range=(0.0, 1.0))
    max_views_per_instance: int = _f(30, "K: most views kept per instance", range=(1, 10000))
    keyframe_translation: float = _f(0.05, "keyframe gate: smallest camera translation (m)", range=(0.0, 100.0))
    keyframe_rotation_deg: float = _f(5.0, "keyframe gate: smallest camera rotation (degrees)", range=(0.0, 180.0))
    deblur: str = _f("none", "deblur robot (low-quality) frames before cutting views: unsharp masking, Wiener "
                     "deconvolution (Gaussian PSF), or a user TorchScript model (views.deblur_model)",
                     choices=("none", "unsharp", "wiener", "model"))
    deblur_model: str | None = _f(None, "views.deblur model: TorchScript file, (1,3,H,W) in [0,1] -> same shape")
    deblur_sigma: float = _f(2.0, "views.deblur unsharp / wiener: sigma of the Gaussian blur (px)", range=(0.1, 20.0))
    deblur_amount: float = _f(0.5, "views.deblur unsharp: strength", range=(0.0, 10.0))
    deblur_nsr: float = _f(0.1, "views.deblur wiener: noise-to-signal ratio (regularisation)", range=(1e-6, 10.0))


@dataclass
class LearningConfig:
    """Fine-tuning of the instance encoder (docs/finetuning.md): CrossIA's instance classifier, a
    self-supervised objective, LQ/HQ pairing, augmentations and the label-free monitor."""

    backbone: str = _f("mobilenet_v2", "torchvision backbone",
                       choices=("mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "resnet18", "resnet50"))
    pretrained: bool = _f(True, "start from ImageNet weights in models/ (mobilenet_v2) when available")
    init_checkpoint: str | None = _f(None, "official SimSiam checkpoint or our model.pt to start from")
    trainable: str = _f("last", "which backbone parameters train: last stage (CrossIA), all, or heads only",
                        choices=("last", "all", "heads"))
    objective: str = _f("simsiam", "self-supervised objective, each with its own recipe (ssl_nav/learning/objectives.py): "
                        "simsiam (SimSiam with CrossIA pairing), moco (MoCo v2 as published), moco_masked (MoCo v2 "
                        "whose negatives exclude the anchor's map instance: uses the map's ids), simclr, barlow "
                        "(Barlow Twins), none (the instance classifier alone)",
                        choices=("simsiam", "moco", "moco_masked", "simclr", "barlow", "none"))
    proj_dim: int = _f(2048, "SimSiam/SimCLR/Barlow projector output dimension (SimSiam: 2048)", range=(8, 16384))
    pred_hidden_dim: int = _f(512, "predictor bottleneck (SimSiam: 512)", range=(8, 16384))
    epochs: int = _f(20, "training epochs", range=(1, 100000))
    batch_size: int = _f(32, "batch size (CrossIA: 32)", range=(2, 65536))
    image_size: int = _f(224, "training / embedding image size (px)", range=(16, 1024))
    base_lr: float = _f(-1.0, "base learning rate; lr = base_lr * batch_size / 256; -1 = the objective's recipe "
                        "(simsiam: 0.2, a quarter of CrossIA's 0.1 at batch 32)", range=(-1.0, 100.0))
    momentum: float = _f(0.9, "SGD momentum", range=(0.0, 1.0))
    weight_decay: float = _f(-1.0, "SGD weight decay; -1 = the objective's recipe (simsiam: 1.5e-6, CrossIA)",
                             range=(-1.0, 1.0))
    warmup_epochs: int = _f(-1, "linear warm-up epochs before the cosine decay; -1 = the objective's recipe",
                            range=(-1, 100000))
    head_warmup_epochs: int = _f(-1, "epochs at the start that train only the heads (projector, predictor, "
                                 "classifier) with the backbone frozen; -1 = the objective's recipe",
                                 range=(-1, 100000))
    fix_pred_lr: bool = _f(True, "keep the predictor's learning rate fixed (SimSiam)")
    augment: str = _f("instance", "augmentation recipe: instance (colour kept: no hue, no grayscale), CrossIA "
                      "(no crops), or SimSiam/MoCo-v2 (random crops)", choices=("instance", "crossia", "simsiam"))
    crossia: bool = _f(True, "CrossIA pairing: a robot view's partner is a user photo of the instance when there "
                       "is one (else SimView: any other view of it)")
    ce_weight: float = _f(1.0, "weight of the instance-classifier cross-entropy on map ids (0 = no classifier)",
                          range=(0.0, 100.0))
    recolour_oe_weight: float = _f(0.5, "outlier exposure: weight of the loss that makes the instance classifier "
                                   "uniform on recoloured copies of the anchor views, so recoloured look-alikes "
                                   "score low as open-set queries (0 = off)", range=(0.0, 100.0))
    domain_adversarial: bool = _f(False, "LQ/HQ domain discriminator behind gradient reversal")
    domain_weight: float = _f(0.1, "weight of the domain-discriminator loss", range=(0.0, 100.0))
    hard_views: int = _f(1, "Hard View Selection: sample N pairs, train on the hardest (1 = off)", range=(1, 16))
    num_workers: int = _f(0, "DataLoader workers", range=(0, 64))
    cache_images: bool = _f(True, "cache decoded images in memory as uint8 when they fit")
    cache_max_mb: int = _f(2048, "largest image cache (MB); larger stores are decoded on the fly", range=(0, 1_000_000))
    checkpoint_every: int = _f(5, "write checkpoint.pt every N epochs (and after the last)", range=(1, 100000))
    holdout_fraction: float = _f(0.2, "fraction of views held out for the kNN monitor", range=(0.0, 0.9))
    view_fraction: float = _f(1.0, "fraction of each instance's robot views to train on (seed-stable subset, "
                              "nested across fractions; user photos always kept): the reduced-data setting",
                              range=(0.01, 1.0))
    monitor_every: int = _f(5, "compute the monitor metrics every N epochs (and always after the last)",
                            range=(1, 100000))
    monitor_max_views: int = _f(256, "most views the monitor embeds per epoch (held-out first, then a seeded subset)",
                                range=(2, 10_000_000))
    temperature: float = _f(0.1, "SimCLR NT-Xent temperature", range=(0.001, 10.0))
    barlow_lambda: float = _f(0.005, "Barlow Twins weight of the off-diagonal terms", range=(0.0, 1.0))
    barlow_per_dimension: bool = _f(True, "divide the Barlow Twins sum by the projector dimension, so that it does "
                                    "not swamp the instance cross-entropy (the paper's sum: false)")
    moco_dim: int = _f(128, "MoCo v2 key/query dimension (paper: 128)", range=(8, 16384))
    moco_queue: int = _f(65536, "MoCo v2 queue length (paper: 65536); capped at the number of training views",
                         range=(2, 10_000_000))
    moco_momentum: float = _f(0.99, "MoCo key-encoder momentum (paper: 0.999 over ~10^6 steps; a fine-tune has "
                              "a few hundred)", range=(0.0, 1.0))
    moco_temperature: float = _f(0.2, "MoCo v2 InfoNCE temperature", range=(0.001, 10.0))
    collapse_threshold: float = _f(0.5, "warn when the effective rank or the per-dimension std of the normalised "
                                   "embeddings falls below this fraction of the starting encoder's",
                                   range=(0.0, 1.0))
    seed: int = _f(0, "training seed", range=(0, 2**31 - 1))
    device: str = _f("auto", "device", choices=("auto", "cpu", "cuda"))
    amp: bool = _f(True, "mixed precision (CUDA only)")
    channels_last: bool = _f(True, "channels_last (NHWC) memory format for model and batches, on CPU and CUDA")
    fuse_frozen_stem: bool = _f(True, "trainable last/heads: run the frozen stem as an inference copy with "
                                "BatchNorm folded into its convolutions (same function, faster)")
    threads: int = _f(0, "torch CPU threads (0 = torch default)", range=(0, 256))


@dataclass
class EnergyConfig:
    """Energy metering of each fine-tune."""

    backend: str = _f("auto", "energy source (auto: jetson, else nvml+rapl, else zeus, else rapl; docs/energy.md)",
                      choices=("auto", "jetson", "nvml+rapl", "nvml", "rapl", "zeus", "none"))
    sample_period_s: float = _f(0.1, "sampling period of polled sensors (s)", range=(0.001, 60.0))
    powercap_root: str = _f("/sys/class/powercap", "RAPL powercap sysfs root")
    hwmon_root: str = _f("/sys/bus/i2c/drivers/ina3221", "Jetson INA3221 sysfs root")
    idle_baseline_s: float = _f(0.0, "seconds of idle power measured before the run, reported with the total "
                                "above it (0 = off)", range=(0.0, 600.0))
    ledger: str = _f("energy.jsonl", "ledger file name in the data directory")


@dataclass
class RetrievalConfig:
    """FAISS instance index, open-set rejection and goals."""

    index_type: str = _f("auto", "FAISS index structure: flat (exact), ivf_flat, ivf_sq8, ivf_pq (+ refine), hnsw; "
                         "auto: flat below approximate_from vectors, auto_approximate from there on",
                         choices=("auto", "flat", "ivf_flat", "ivf_sq8", "ivf_pq", "hnsw"))
    approximate_from: int = _f(50000, "auto: use auto_approximate from this many vectors on, flat (exact) below",
                               range=(1, 10**9))
    auto_approximate: str = _f("ivf_pq", "auto: the approximate structure for large indexes (chosen by "
                               "benchmarks/bench_retrieval.py)", choices=("ivf_flat", "ivf_sq8", "ivf_pq", "hnsw"))
    ivf_nlist: int = _f(0, "IVF cells (k-means centroids); 0 = sqrt(n) rounded to a power of two", range=(0, 10**7))
    ivf_nprobe: int = _f(32, "IVF cells scanned per query", range=(1, 10**6))
    pq_m: int = _f(64, "ivf_pq: sub-quantisers (bytes per vector; the largest divisor of the dimension <= this)",
                   range=(1, 4096))
    refine: str = _f("sq8", "ivf_pq: re-rank candidates with exact (flat) or 8-bit (sq8) vectors, or not (none)",
                     choices=("none", "sq8", "flat"))
    refine_k_factor: int = _f(8, "ivf_pq with refine: candidates re-ranked per result (k * k_factor)",
                              range=(1, 1000))
    hnsw_m: int = _f(32, "HNSW neighbours per node", range=(4, 256))
    hnsw_ef_search: int = _f(128, "HNSW search breadth", range=(1, 10000))
    hnsw_ef_construction: int = _f(80, "HNSW construction breadth", range=(1, 10000))
    aggregation: str = _f("max", "instance score from its views: best view (SimView) or mean of top-m",
                          choices=("max", "mean_top_m"))
    top_m: int = _f(3, "m for mean_top_m", range=(1, 1000))
    search_k: int = _f(256, "views searched before aggregation", range=(1, 100000))
    top_k: int = _f(5, "instances returned", range=(1, 1000))
    open_set_score: str = _f("auto", "open-set ('not in the map') score: auto = the classifier's max softmax when "
                             "the model has one, else sim_softmax; see ssl_nav/retrieval/openset.py",
                             choices=("auto", "best", "margin", "query_z", "instance_z", "sim_softmax", "norm",
                                      "max_logit", "energy", "max_softmax"))
    reject_threshold: float = _f(0.5, "reject as 'not in the map' below this open-set score, unless the index "
                                 "holds a threshold fitted by ssl-nav calibrate for the same score",
                                 range=(-1e6, 1e6))
    reject_margin: float = _f(0.0, "also reject below this best-minus-second instance margin (0 = off)",
                              range=(0.0, 2.0))
    softmax_temperature: float = _f(0.05, "temperature of the sim_softmax open-set score", range=(1e-4, 10.0))
    min_query_px: int = _f(32, "query photos smaller than this on the shorter side are rejected as bad input",
                           range=(1, 4096))
    flip_tta: bool = _f(True, "average each image's embedding and logits with its mirror's (index views and "
                                "queries; doubles embedding cost; BENCHMARKS.md ablation)")
    batch_size: int = _f(64, "embedding batch size", range=(1, 65536))
    image_size: int = _f(224, "embedding image size (px)", range=(16, 1024))
    standoff: float = _f(1.0, "goal distance from the instance centroid (m)", range=(0.0, 20.0))
    device: str = _f("auto", "device", choices=("auto", "cpu", "cuda"))
    query_crop: str = _f("object", "simulated query photos: square crop around the goal object (as a user frames "
                         "it) or the full goal image", choices=("object", "full"))
    update_period_s: float = _f(1.0, "retrieval_server: look for new views in the store this often and add them to "
                                "the index without re-embedding the store (s); 0 = only on ~/reload or model_ready",
                                range=(0.0, 3600.0))
    index_quality: str = _f("low", "views indexed: the robot's own (low-quality) views, the evaluation protocol "
                            "(user photos are training data); or all, user photos too", choices=("low", "all"))
    self_calibration: bool = _f(True, "use the open-set threshold fitted at fine-tune time (held-out robot views "
                                "vs recoloured look-alikes, stored in model.pt) when the index holds none fitted by "
                                "ssl-nav calibrate; off: retrieval.reject_threshold")
    verify: bool = _f(False, "verify the shortlist with local features (ssl_nav/retrieval/verify.py): match the "
                      "query against the best views of the top verify_top_k instances, count RANSAC inliers, and "
                      "add verify_weight x their evidence to the ranking and the open-set score; off by default "
                      "(BENCHMARKS.md 'Verification')")
    verify_matcher: str = _f("sift", "local features of the verification: SIFT or ORB (OpenCV, no weights)",
                             choices=("sift", "orb"))
    verify_top_k: int = _f(3, "instances verified per query (the top of the embedding ranking)", range=(1, 100))
    verify_views: int = _f(3, "views matched per verified instance (its best by similarity)", range=(1, 100))
    verify_weight: float = _f(0.2, "weight of the verification evidence (log inliers, 0-1) added to the instance "
                              "score and the open-set score; ssl-nav calibrate fits its own", range=(0.0, 100.0))
    verify_inlier_scale: float = _f(30.0, "RANSAC inliers that count as full verification evidence (1.0)",
                                    range=(1.0, 10000.0))


@dataclass
class RosConfig:
    """ROS 2 node settings (topics live in launch remaps)."""

    map_frame: str = _f("map", "frame of poses and goals")
    data_dir: str = _f("~/.ssl_nav", "data directory: store/, runs/, index/ and the energy ledger")
    sync_tolerance_s: float = _f(0.05, "largest stamp difference within one RGB-D(+pose) set (s)", range=(0.0, 10.0))
    max_stamp_skew_s: float = _f(1.0, "drop camera messages whose stamp is this far from their arrival (s)",
                                 range=(0.0, 3600.0))
    query_queue: int = _f(2, "bounded query queue; the oldest is dropped under a flood", range=(1, 1000))
    publish_markers: bool = _f(True, "publish MarkerArray visualisations")
    sim_rate_hz: float = _f(5.0, "sim_bridge publish rate (Hz)", range=(0.1, 100.0))
    sim_loop: bool = _f(False, "sim_bridge repeats its exploration trajectory instead of stopping after one pass")
    depth_scale_16u: float = _f(0.001, "metres per unit of 16UC1 depth images (RealSense: 0.001)",
                                range=(1e-6, 1.0))
    status_period_s: float = _f(1.0, "period of the view_collector's ~/status, ~/instances and instances.json, "
                                "and of the retrieval_server's ~/status (s)",
                                range=(0.05, 3600.0))
    sync_window_s: float = _f(1.0, "view_collector: how long an rgb frame waits for its depth, pose (and mask) "
                              "before it counts as a sync drop (s)", range=(0.05, 60.0))
    mask_wait_s: float = _f(1.0, "view_collector with mapping.segmenter auto: decide 'geometric' when no "
                            "instance_mask arrived this long after the first rgb frame (s)", range=(0.0, 60.0))
    keyframe_queue: int = _f(4, "view_collector: keyframes waiting for fusion and cropping; when full the oldest "
                             "is dropped (counted as queue_overflow)", range=(1, 1000))
    sim_publish_masks: bool = _f(True, "sim_bridge publishes the simulator's instance masks (false: a camera "
                                 "without masks, for the geometric segmenter)")
    index_model: str = _f("mobilenet_v2", "model the retrieval server indexes with before any fine-tuned model "
                          "arrives: a backbone name (ImageNet weights) or a model.pt")


@dataclass
class RecordingsConfig:
    """Recordings read by ``ssl-nav collect --bag`` (rosbag2) and ``--tum`` (TUM RGB-D); docs/formats.md."""

    rgb_topic: str = _f("/camera/camera/color/image_raw", "bag: colour topic (sensor_msgs/Image or "
                        "CompressedImage); the default is realsense2_camera's")
    depth_topic: str = _f("/camera/camera/aligned_depth_to_color/image_raw", "bag: depth topic registered to the "
                          "colour camera (Image 16UC1 mm / 32FC1 m, or CompressedImage compressedDepth); "
                          "realsense2_camera with align_depth.enable:=true")
    camera_info_topic: str = _f("/camera/camera/color/camera_info", "bag: CameraInfo of the colour camera")
    instance_topic: str = _f("/ssl_nav/instance_mask", "bag: optional instance-mask topic (Image 16UC1/32SC1), "
                             "used when the bag has it (ssl-nav simulate --bag writes it)")
    pose_source: str = _f("tf", "bag: camera pose from /tf + /tf_static, or from pose_topic (PoseStamped or "
                          "Odometry)", choices=("tf", "topic"))
    pose_topic: str = _f("/camera_pose", "bag with pose_source topic: PoseStamped or Odometry topic")
    world_frame: str = _f("map", "bag: world frame of the poses", choices=("map", "odom"))
    camera_frame: str = _f("", "bag: the camera's optical frame (empty = the colour image's header.frame_id)")
    tum_max_difference: float = _f(0.02, "TUM: largest stamp difference when associating rgb, depth and "
                                   "groundtruth (s; associate.py's default)", range=(0.0, 1.0))
    tum_camera: str = _f("auto", "TUM: intrinsics (auto: from the sequence name freiburg1/2/3, else default)",
                         choices=("auto", "freiburg1", "freiburg2", "freiburg3", "default"))


@dataclass
class PipelineConfig:
    """Every stage, as one YAML file (``config/pipeline.yaml``)."""

    sim: SimConfig = field(default_factory=SimConfig)
    mapping: MappingConfig = field(default_factory=MappingConfig)
    views: ViewsConfig = field(default_factory=ViewsConfig)
    learning: LearningConfig = field(default_factory=LearningConfig)
    energy: EnergyConfig = field(default_factory=EnergyConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    ros: RosConfig = field(default_factory=RosConfig)
    recordings: RecordingsConfig = field(default_factory=RecordingsConfig)


#: section name -> section dataclass, in file order
SECTIONS: dict[str, type] = typing.get_type_hints(PipelineConfig)


def field_info(cls: type) -> list[tuple[dataclasses.Field, Any]]:
    """(field, resolved type) for every field of a config dataclass."""
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls)]


def check_value(where: str, key: str, value: Any, tp: Any, f: dataclasses.Field) -> Any:
    """Validate one value against its field type, choices and range; return it coerced."""
    optional = typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp)
    base = next((a for a in typing.get_args(tp) if a is not type(None)), tp) if optional else tp
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{where}: key '{key}' must be {base.__name__}, got null")
    if base is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: key '{key}' must be true or false, got {value!r}")
    elif base is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: key '{key}' must be an integer, got {value!r}")
    elif base is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: key '{key}' must be a number, got {value!r}")
        value = float(value)
    elif base is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: key '{key}' must be a string, got {value!r}")
    choices = f.metadata.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{where}: key '{key}' must be one of {', '.join(map(str, choices))}; got {value!r}")
    rng = f.metadata.get("range")
    if rng is not None and not (rng[0] <= value <= rng[1]):
        raise ConfigError(f"{where}: key '{key}' must lie in [{rng[0]}, {rng[1]}]; got {value!r}")
    return value


def section_from_dict(cls: type, data: dict, where: str, prefix: str = "") -> Any:
    """Build one section dataclass from a mapping, rejecting unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: section '{prefix.rstrip('.') or cls.__name__}' must be a mapping, got {type(data).__name__}")
    info = {f.name: (f, tp) for f, tp in field_info(cls)}
    unknown = sorted(set(data) - set(info))
    if unknown:
        raise ConfigError(f"{where}: unknown key '{prefix}{unknown[0]}' (known: {', '.join(sorted(info))})")
    values = {k: check_value(where, prefix + k, v, info[k][1], info[k][0]) for k, v in data.items()}
    obj = cls(**values)
    validate(obj, where)
    return obj


def validate(cfg: Any, where: str = "config") -> None:
    """Cross-field checks (min <= max and the like)."""
    if isinstance(cfg, SimConfig):
        for lo in ("camera_height", "n_objects", "room_size", "object_size", "photo_distance", "goal_distance"):
            if getattr(cfg, f"{lo}_min") > getattr(cfg, f"{lo}_max"):
                raise ConfigError(f"{where}: key 'sim.{lo}_min' exceeds 'sim.{lo}_max'")
    if isinstance(cfg, MappingConfig) and cfg.min_depth >= cfg.max_depth:
        raise ConfigError(f"{where}: key 'mapping.min_depth' must be below 'mapping.max_depth'")
    if isinstance(cfg, LearningConfig) and cfg.warmup_epochs > cfg.epochs:
        raise ConfigError(f"{where}: key 'learning.warmup_epochs' ({cfg.warmup_epochs}) exceeds 'learning.epochs' "
                          f"({cfg.epochs}): the learning rate would never reach its base value")


def config_from_dict(data: dict | None, where: str = "config") -> PipelineConfig:
    """Build a :class:`PipelineConfig` from nested dicts; missing keys keep their defaults."""
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: top level must be a mapping of sections")
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{where}: unknown section '{unknown[0]}' (known: {', '.join(SECTIONS)})")
    return PipelineConfig(**{name: section_from_dict(SECTIONS[name], data[name], where, f"{name}.")
                             for name in data})


class DuplicateKeyError(ValueError):
    """A YAML mapping holds one key twice (the message starts with the line number)."""


def _unique_key_loader() -> type:
    """A YAML SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last one silently)."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen: dict = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: let PyYAML report it
                    break
                if first is not None:
                    raise DuplicateKeyError(f"{key_node.start_mark.line + 1}: key '{key}' is given twice "
                                            f"(first on line {first}); remove one")
                seen[key] = key_node.start_mark.line + 1
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


def load_config(path: str | os.PathLike | None) -> PipelineConfig:
    """Load a YAML config; ``None`` gives the defaults. Errors name the file and the key (a key given twice, a
    file that is not UTF-8 or not YAML, an unknown key, a wrong type or range, inconsistent keys)."""
    if path is None:
        return PipelineConfig()
    import yaml

    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ConfigError(f"{p}: cannot read config ({e.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise ConfigError(f"{p}:{line}: not UTF-8 text (byte {e.start})") from None
    try:
        data = yaml.load(text, Loader=_unique_key_loader())  # noqa: S506 - a SafeLoader subclass
    except DuplicateKeyError as e:
        raise ConfigError(f"{p}:{e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML ({e})") from None
    return config_from_dict(data, str(p))


def to_dict(cfg: Any) -> dict:
    """Plain nested dict of a config dataclass."""
    return dataclasses.asdict(cfg)


def dump_yaml(cfg: PipelineConfig) -> str:
    """YAML text of a config, with each field's help as a comment."""
    lines = ["# ssl_nav pipeline configuration. Generated by `ssl-nav config dump`; mirrors ssl_nav/config.py.", ""]
    for name, cls in SECTIONS.items():
        lines.append(f"{name}:  # {cls.__doc__.strip().splitlines()[0]}")
        section = getattr(cfg, name)
        for f, _ in field_info(cls):
            lines.append(f"  {f.name}: {_yaml_scalar(getattr(section, f.name))}  # {f.metadata.get('help', '')}")
        lines.append("")
    return "\n".join(lines)


def _yaml_scalar(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, int):
        return str(v)
    return json.dumps(v)


def apply_overrides(cfg: PipelineConfig, overrides: dict[str, Any], where: str = "command line") -> PipelineConfig:
    """Return a copy of ``cfg`` with ``{"section.key": value}`` overrides applied (``None`` values are skipped).

    Cross-field checks run once all overrides are in (``--epochs 3`` may come with a lower warm-up)."""
    cfg = dataclasses.replace(cfg)
    touched: list[str] = []
    for dotted, value in overrides.items():
        if value is None:
            continue
        section_name, _, key = dotted.partition(".")
        if section_name not in SECTIONS:
            raise ConfigError(f"{where}: unknown section '{section_name}'")
        section = getattr(cfg, section_name)
        info = {f.name: (f, tp) for f, tp in field_info(type(section))}
        if key not in info:
            raise ConfigError(f"{where}: unknown key '{dotted}'")
        value = check_value(where, dotted, value, info[key][1], info[key][0])
        setattr(cfg, section_name, dataclasses.replace(section, **{key: value}))
        if section_name not in touched:
            touched.append(section_name)
    for section_name in touched:
        validate(getattr(cfg, section_name), where)
    return cfg
