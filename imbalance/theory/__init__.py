"""Exact equilibria of imbalanced softmax models (numpy/scipy; never imports sim)."""
