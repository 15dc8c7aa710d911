"""Training: data sources and loaders, the loop, run directories, checkpoints, transfer, tracking, eval and predict."""
