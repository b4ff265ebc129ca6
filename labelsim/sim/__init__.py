"""Everything that produces a run: data sources, noise protocols, the grid and its keys,
augmentation, the one-replica train step, slots and strategies, devices, and the scheduler."""
