"""Judging a model on evaluation data: the data, its predictions cache, the paired bootstrap,
slices, permutation importance, the comparison's record and the gate's rules."""
