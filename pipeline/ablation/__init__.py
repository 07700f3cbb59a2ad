"""Ablations: designs over data-side and model-side factors (`design`), their execution over
seeds (`execute`), paired effects (`effects`, `stats`) and the report (`report`, `plots`)."""
