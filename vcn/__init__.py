"""VCN: mask prediction network (MPN) + robust inpainting network (RIN) with probabilistic context normalization."""
