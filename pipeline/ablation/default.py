"""The ablation `python -m pipeline ablate` runs without a config: the chapter's lessons on
digits, where the data allows them to show. Every technique is off in the baseline and each is
switched on alone, plus the data-side, model-side and combined corners.

Digits is easy: a CNN trained on all of it is near its ceiling, where no technique moves test
accuracy beyond the noise of a few hundred test samples. So the baseline trains on a small set
(35% of the training split; "more data" is the factor that restores the rest), half the samples
are held out for test, and eight seeds each draw their own split and augmentation. With 40
epochs, early stopping has room to stop. Its wall time and verdict are in docs/performance.md
and the README."""

DEFAULT_ABLATION = {
    "data": {"test_fraction": 0.5, "train_fraction": 0.35},
    "train": {"epochs": 40},
    "ablation": {
        "design": "one_at_a_time",
        "seeds": [0, 1, 2, 3, 4, 5, 6, 7],
        "vary": ["train", "split", "augment"],  # each seed its own split and augmentation draws too
        # Removing each change from the all-on configuration too would take 144 trainings instead
        # of 88: `ablation.remove_one=true` asks for it.
        "remove_one": False,
        "factors": {
            "data.train_fraction": {"side": "data", "values": [0.35, 1.0]},
            "augment.mode": {"side": "data", "values": ["none", "offline"]},
            "scale.method": {"side": "data", "values": ["none", "standard"]},
            "model.batch_norm": {"side": "model", "values": [False, True]},
            "model.dropout": {"side": "model", "values": [0.0, 0.3]},
            "early_stop.enabled": {"side": "model", "values": [False, True]},
            "schedule.type": {"side": "model", "values": ["none", "cosine"]},
        },
    },
}
