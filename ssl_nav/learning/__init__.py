"""Self-supervised fine-tuning of instance encoders: SimSiam (Chen & He, arXiv 2011.10566) on SimView
multi-view pairs (arXiv 2404.09647), with CrossIA's instance classifier and LQ/HQ pairing (arXiv 2404.09645).

Modules: ``backbones`` (torchvision feature extractors, checkpoints, partial fine-tuning, ``load_encoder``),
``simsiam`` (heads + loss), ``objectives`` (SimCLR, Barlow Twins), ``crossia`` (classifier, pairing, domain
discriminator), ``data`` (pairs, augmentations, sampler), ``monitor`` (label-free health metrics) and
``trainer`` (``finetune``). Import the submodules; this package imports nothing heavy.
"""
