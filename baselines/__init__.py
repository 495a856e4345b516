"""Baseline generators (CA, GMC, PC, GC), each run behind the VCN mask prediction network."""
