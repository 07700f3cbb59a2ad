"""The ablation `python -m pipeline ablate` runs without a config: digits, every technique off
in the baseline, each switched on alone, plus the data-side, model-side and combined corners."""

DEFAULT_ABLATION = {
    "train": {"epochs": 20},
    "ablation": {
        "design": "one_at_a_time",
        "seeds": [0, 1, 2, 3, 4],
        "vary": ["train", "split", "augment"],  # each seed its own split and augmentation draws too
        # Removing each change from the all-on configuration too would take 80 trainings instead
        # of 50: `ablation.remove_one=true` asks for it.
        "remove_one": False,
        "factors": {
            "augment.mode": {"side": "data", "values": ["none", "offline"]},
            "scale.method": {"side": "data", "values": ["none", "standard"]},
            "model.batch_norm": {"side": "model", "values": [False, True]},
            "model.dropout": {"side": "model", "values": [0.0, 0.3]},
            "early_stop.enabled": {"side": "model", "values": [False, True]},
            "schedule.type": {"side": "model", "values": ["none", "cosine"]},
        },
    },
}
