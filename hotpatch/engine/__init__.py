"""The torch.fx engine: trace, analyse, rewrite. Knows no data set, no CLI, no training."""
