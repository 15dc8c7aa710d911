"""Training: the spec's `train:` section, data sources, augmentation, the loop, run directories, checkpoints."""
