"""Engines: how trials train.

``optim`` (the optimizer specification), ``train`` (the one training loop and the sequential engine), ``stacked``
and ``kernels`` (model containers: one model, or K stacked copies), ``batched`` (K trials as one stacked model),
``anytime`` (trunks and branches) and ``schedulefree`` (schedule-free SGD / AdamW).
"""
