"""Procedural scene specs: determinism from a seed, ids, twins, resting objects, open-set objects."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ssl_nav.errors import ConfigError
from ssl_nav.sim.scenes import build_scene_spec, model_points, navigable


@pytest.fixture
def small_sim_config(make_cfg):
    return make_cfg


def _spec_json(spec) -> str:
    return json.dumps({"objects": [o.to_json() for o in spec.objects], "open": [o.to_json() for o in spec.open_set],
                       "calibration": [o.to_json() for o in spec.calibration_open_set],
                       "parts": [[p.name, p.center.tolist(), p.half_extents.tolist(), p.rgba,
                                  None if p.texture is None else p.texture.key()]
                                 for p in spec.parts], **spec.to_json()}, sort_keys=True)


def test_same_seed_same_scene_other_seed_other_scene(small_sim_config):
    cfg = small_sim_config()
    assert _spec_json(build_scene_spec(3, cfg)) == _spec_json(build_scene_spec(3, cfg))
    assert _spec_json(build_scene_spec(3, cfg)) != _spec_json(build_scene_spec(4, cfg))


@pytest.mark.parametrize("seed", [0, 7, 11])
def test_ids_roles_and_twins(seed, small_sim_config):
    cfg = small_sim_config()
    spec = build_scene_spec(seed, cfg)
    ids = [o.instance_id for o in spec.objects]
    assert ids == list(range(1, len(ids) + 1))
    assert cfg.n_objects_min <= len(ids) <= cfg.n_objects_max
    roles = [o.role for o in spec.objects]
    assert roles.count("twin") == cfg.n_twins and roles.count("distractor") == cfg.n_distractors
    by_id = {o.instance_id: o for o in spec.objects}
    for twin in (o for o in spec.objects if o.role == "twin"):
        src = by_id[twin.twin_of]
        assert src.role == "object"
        assert twin.category == src.category and np.allclose(twin.mesh_scale, src.mesh_scale)
        assert (twin.rgba, twin.texture) != (src.rgba, src.texture)  # recoloured / retextured
        assert twin.support != src.support  # placed elsewhere
    # open-set objects: ids after the scene's, and a model not used by any goal object
    assert [o.instance_id for o in spec.open_set] == list(range(len(ids) + 1, len(ids) + 1 + len(spec.open_set)))
    assert len(spec.open_set) == cfg.n_open_set
    scene_categories = {o.category for o in spec.objects}
    assert not scene_categories & {o.category for o in spec.open_set}


def test_objects_rest_on_supports_without_overlap(small_sim_config):
    spec = build_scene_spec(5, small_sim_config())
    supports = {s.name: s for s in spec.supports}
    for o in spec.objects + spec.open_set:
        s = supports[o.support]
        assert o.aabb_min[2] == pytest.approx(s.z, abs=1e-9)  # resting on the surface
        assert s.xmin - 1e-9 <= o.aabb_min[0] and o.aabb_max[0] <= s.xmax + 1e-9
        assert o.aabb_max[2] - o.aabb_min[2] <= s.clearance + 1e-9
        # the box is exactly the transformed mesh
        pts = model_points(o.model, o.mesh_scale, o.yaw) + o.position
        assert np.allclose(pts.min(0), o.aabb_min) and np.allclose(pts.max(0), o.aabb_max)
        assert 0.15 - 1e-6 <= (o.aabb_max - o.aabb_min).max() <= 0.45 + 1e-6
    placed = spec.objects + spec.open_set
    for i, a in enumerate(placed):
        for b in placed[i + 1:]:
            if a.support == b.support:
                apart = (a.aabb_max[:2] < b.aabb_min[:2]).any() or (b.aabb_max[:2] < a.aabb_min[:2]).any()
                assert apart, (a.instance_id, b.instance_id)


def test_navigable_excludes_furniture_and_floor_objects(small_sim_config):
    spec = build_scene_spec(2, small_sim_config())
    for r in spec.footprints:
        assert not navigable(spec, np.array([(r[0] + r[1]) / 2, (r[2] + r[3]) / 2]), 0.3)
    for o in spec.objects:
        if o.support == "floor":
            assert not navigable(spec, (o.aabb_min + o.aabb_max) / 2, 0.3)
    assert not navigable(spec, np.array([spec.room_max[0] + 1.0, 0.0]), 0.3)


def test_bad_counts_name_the_key(small_sim_config):
    with pytest.raises(ConfigError, match="sim.n_twins"):
        build_scene_spec(0, small_sim_config(n_objects_min=4, n_objects_max=4, n_twins=2, n_distractors=2))
    with pytest.raises(ConfigError, match="sim.object_size_min"):
        build_scene_spec(0, small_sim_config(object_size_min=0.5, object_size_max=0.3))


# ---------------------------------------------------------------- products, look-alikes, calibration, hard cases

def test_features_off_leave_the_first_scene_objects_where_they_were(small_sim_config):
    """New features draw from their own streams: the existing objects, room and open set keep their places."""
    base = build_scene_spec(7, small_sim_config())
    more = build_scene_spec(7, small_sim_config(n_lookalikes=2, n_calibration_queries_per_instance=2))
    assert [o.to_json() for o in base.objects] == [o.to_json() for o in more.objects]
    assert [o.to_json() for o in base.open_set] == [o.to_json() for o in more.open_set[: len(base.open_set)]]


def test_products_and_lookalikes(small_sim_config):
    from ssl_nav.sim.scenes import designs_distinct
    from ssl_nav.sim.textures import PackagingDesign

    cfg = small_sim_config(n_products=3, n_lookalikes=4, n_twins=3, n_distractors=1)
    spec = build_scene_spec(11, cfg)
    products = [o for o in spec.objects if o.role == "object" and isinstance(o.texture, PackagingDesign)]
    assert len(products) == 3 and all(o.model.procedural is not None for o in products)
    by_id = {o.instance_id: o for o in spec.objects}
    lookalikes = [o for o in spec.open_set if o.lookalike_of is not None]
    assert len(lookalikes) == 4 and len(spec.open_set) == cfg.n_open_set + 4
    for la in lookalikes:
        src = by_id[la.lookalike_of]
        assert src.role == "object" and la.category == src.category and la.model == src.model
        assert la.instance_id not in by_id  # never in the mapped room
        family = [src] + [o for o in spec.objects if o.twin_of == src.instance_id] \
            + [o for o in spec.open_set if o.lookalike_of == src.instance_id and o is not la]
        for f in family:  # visibly different from its sibling, the sibling's twins and other look-alikes
            if isinstance(la.texture, PackagingDesign) and isinstance(f.texture, PackagingDesign):
                assert designs_distinct(la.texture, f.texture)
            else:
                assert (la.texture, la.rgba) != (f.texture, f.rgba)
        j = la.to_json()
        assert j["lookalike_of"] == src.instance_id and j["lookalike"].split(":")[0] in ("recolour", "retexture",
                                                                                         "variant")


def test_calibration_open_set_is_disjoint_from_the_test_open_set(small_sim_config):
    spec = build_scene_spec(5, small_sim_config(n_lookalikes=2, n_products=2))
    test_ids = {o.instance_id for o in spec.open_set}
    cal = spec.calibration_open_set
    assert len(cal) == len(spec.open_set) and not test_ids & {o.instance_id for o in cal}
    ids = [o.instance_id for o in spec.objects + spec.open_set + cal]
    assert ids == list(range(1, len(ids) + 1))
    unrelated = [o for o in cal if o.lookalike_of is None]
    assert not {o.category for o in unrelated} & {o.category for o in spec.objects + spec.open_set}
    test_looks = {(o.lookalike_of, o.texture.key() if o.texture else None, o.rgba) for o in spec.open_set}
    assert not test_looks & {(o.lookalike_of, o.texture.key() if o.texture else None, o.rgba) for o in cal}
    assert build_scene_spec(5, small_sim_config(n_calibration_queries_per_instance=0)).calibration_open_set == []


def test_hard_cases(small_sim_config):
    from ssl_nav.sim.scenes import footprint, polygon_gap

    cfg = small_sim_config(hard_cases=True)
    spec = build_scene_spec(3, cfg)
    hard = [o for o in spec.objects if o.hard_case]
    kinds = {o.hard_case for o in hard}
    assert kinds - {"on_solid_furniture"} == {"touching", "clutter", "thin_flat", "small", "stacked"}
    by_id = {o.instance_id: o for o in spec.objects}
    supports = {s.name: s for s in spec.supports}
    for o in hard:
        assert o.role == "distractor" and o.aabb_min[2] == pytest.approx(supports[o.support].z, abs=1e-9)
    touching = [o for o in hard if o.hard_case == "touching"]
    assert touching
    for o in touching:  # footprints within the gap, not interpenetrating; both sides record it
        (other,) = o.touching
        gap = polygon_gap(footprint(o), footprint(by_id[other]))
        assert 0.0 < gap <= cfg.hard_touch_gap + 1e-6 and o.instance_id in by_id[other].touching
    for o in hard:
        ext = o.aabb_max - o.aabb_min
        if o.hard_case == "small":
            assert cfg.hard_small_size_min - 1e-6 <= ext.max() <= cfg.hard_small_size_max + 1e-6
        if o.hard_case == "thin_flat":
            assert ext[2] <= 0.045
    for o in (o for o in hard if o.hard_case == "stacked"):
        base = by_id[int(o.support.split("_")[-1])]
        assert o.support == f"on_object_{base.instance_id}" and base.hard_case == "thin_flat"
        assert o.aabb_min[2] == pytest.approx(base.aabb_max[2])
    json.dumps([o.to_json() for o in spec.objects])  # scene.json still describes every object


def test_hard_cases_add_solid_furniture_with_objects_on_it(small_sim_config):
    cfg = small_sim_config(hard_cases=True, hard_solid_furniture=2)
    spec = build_scene_spec(0, cfg)
    solid = [p for p in spec.parts if "_solid_" in p.name]
    assert solid and len(spec.footprints) == len(spec.furniture_tops)
    supports = {s.name: s for s in spec.supports}
    for p in solid:  # a box on the floor, its top a support, its footprint kept clear of the robot
        assert p.center[2] - p.half_extents[2] == pytest.approx(0.0)
        assert supports[p.name].z == pytest.approx(p.center[2] + p.half_extents[2])
        assert not navigable(spec, p.center[:2], 0.1)
    on = [o for o in spec.objects if o.hard_case == "on_solid_furniture"]
    assert on and all(o.support in {p.name for p in solid} for o in on)
    for o in on:
        assert o.aabb_min[2] == pytest.approx(supports[o.support].z, abs=1e-9)
    # without the hard cases the scene has none, and the hard cases' other objects do not move
    assert not [p for p in build_scene_spec(0, small_sim_config()).parts if "_solid_" in p.name]
    none = build_scene_spec(0, small_sim_config(hard_cases=True, hard_solid_furniture=0))
    before = {o.instance_id: o.position.tolist() for o in none.objects}
    assert all(before[o.instance_id] == o.position.tolist() for o in spec.objects if o.instance_id in before
               and o.hard_case != "on_solid_furniture")
