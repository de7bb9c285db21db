"""Fine-tuning of instance encoders on a robot's own views (docs/finetuning.md): CrossIA's instance classifier
and LQ/HQ pairing (arXiv 2404.09645) on SimView multi-view pairs (arXiv 2404.09647), with a self-supervised
objective (SimSiam, arXiv 2011.10566, the default; MoCo v2, arXiv 2003.04297; a label-aware MoCo variant;
SimCLR; Barlow Twins) or none.

Modules: ``backbones`` (torchvision feature extractors, checkpoints, partial fine-tuning, ``load_encoder``,
``read_classifier``), ``objectives`` (the registry: one class per objective with its recipe), ``catalog``
(their names, without torch), ``simsiam`` (heads + loss), ``moco`` (MLP head, key queue, momentum update),
``simclr``, ``barlow`` (losses), ``crossia`` (classifier, pairing, domain discriminator), ``outlier_exposure``,
``data`` (pairs, augmentation recipes, sampler), ``monitor`` (label-free health metrics), ``checkpoint``
(checkpoint.pt, RNG state, init checkpoints), ``distributed`` (DDP helpers) and ``trainer`` (``finetune``).
Import the submodules; this package imports nothing heavy.
"""
