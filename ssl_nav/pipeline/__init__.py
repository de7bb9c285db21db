"""The end-to-end job shared by ``ssl-nav demo``, ``ssl-nav habitat`` and the benchmarks.

:func:`run_scene` runs every stage on one loaded scene of a :class:`~ssl_nav.sim.base.Simulator`. Each stage
is the function its CLI command calls, so the demo is the CLI sequence (README: "The demo as CLI commands";
``test/test_pipeline.py`` checks that both give identical metrics):

===========  ==================================================  =========================================
stage        function                                            command
===========  ==================================================  =========================================
simulate     :func:`ssl_nav.sim.simulate.write_simulation`       ``ssl-nav simulate --out OUT/frames``
collect      :func:`ssl_nav.views.ingest.collect_recording`      ``ssl-nav collect --frames OUT/frames
                                                                 --store OUT/store``
finetune     :func:`ssl_nav.learning.run_dir.finetune_run`       ``ssl-nav finetune --out OUT/run``
index        :func:`ssl_nav.retrieval.build.build_index`         ``ssl-nav index`` (``--model mobilenet_v2
                                                                 --out OUT/index-baseline``, then
                                                                 ``--model OUT/run/model.pt
                                                                 --out OUT/index-finetuned``)
evaluate     :func:`ssl_nav.retrieval.evaluate.evaluate_index`   ``ssl-nav eval --index OUT/index-finetuned
                                                                 --baseline OUT/index-baseline``
===========  ==================================================  =========================================

1. **simulate**: low-quality robot frames (blur, noise) at the exploration poses, the user photos and each
   episode's goal image (both cropped square around their object, as a user frames them), and the
   calibration split, into the frames directory ``OUT/frames``.
2. **collect**: fuse the frames into the 3D instance map (``OUT/store/map``), cut up to K diverse square
   crops per instance into the view store ``OUT/store`` (SimView, arXiv 2404.09647), and add the user photos
   of ``photos.jsonl`` as ``quality: high`` views (at most 5 per instance, CrossIA arXiv 2404.09645).
3. **finetune**: SimSiam + CrossIA partial fine-tuning of the backbone on the store (``OUT/run``), energy
   metered (``OUT/energy.jsonl``).
4. **index**: FAISS indexes of the store's robot views (``retrieval.index_quality: low``, the evaluation
   protocol: the user photos are training data) with the ImageNet backbone (the baseline) and with the
   fine-tuned one.
5. **evaluate**: the goal images (never used for training) against both indexes: top-1, top-5, mAP, MRR,
   open-set AUROC and accuracy, goal-distance error (:mod:`ssl_nav.retrieval.evaluate`), side by side; and,
   as a separate row, top-1 and open-set AUROC with the user photos indexed too (``metrics_user_photos``).

It writes ``OUT/report.json`` and ``OUT/report.png`` (each query photo with its top-3 instances under both
models, each instance shown by its best-matching stored view, green = correct, red = wrong).

:func:`run_demo` loads the embedded pybullet scene for a seed and draws its trajectory, episodes and user
photos with :func:`ssl_nav.sim.simulate.draw_pybullet_scene` (the streams ``ssl-nav simulate`` uses, so
``ssl-nav simulate --preset demo --seed N`` writes the demo's frames directory), then calls :func:`run_scene`.
Its presets (:data:`DEMO_OVERRIDES`, and :data:`QUICK_OVERRIDES` on top for ``--quick``) take about 90 s
(``--quick``: about 20 s) on 2 idle CPU cores, as the README says; ``ssl-nav config dump --preset quick --seed N`` writes the configuration
they make. Seeds are fixed: the scene, the trajectory, the photos, the episodes and training all derive from
``sim.seed`` / ``learning.seed``.
"""

from ssl_nav.pipeline.demo import run_demo
from ssl_nav.pipeline.gallery import write_gallery
from ssl_nav.pipeline.presets import DEMO_OVERRIDES, QUICK_OVERRIDES, STAGES, demo_config
from ssl_nav.pipeline.scene import ScenePaths, StageTimer, run_scene

__all__ = ["DEMO_OVERRIDES", "QUICK_OVERRIDES", "STAGES", "ScenePaths", "StageTimer", "demo_config", "run_demo",
           "run_scene", "write_gallery"]
