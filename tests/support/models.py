"""Small real models trained in-process, for the integration tests that need a trained
model without a whole `llmc run` (TensorFlow is imported when one is trained)."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import ROOT

DIGITS = ROOT / "examples" / "data" / "digits"


def train_tf_classifier(bundle: Path, out: Path, epochs: int) -> Path:
    """The bundle's MLP after `epochs` of Adam on the digits (2: about 95% test
    accuracy, 4: about 97%), saved at `out` as the SavedModel the classifier serves."""
    import tensorflow as tf

    from llmc.runtime import zoo_tf
    from llmc.runtime.data import batches, epoch_order, load_split

    cfg = json.loads((bundle / "model.json").read_text())["model"]
    train = load_split(cfg, str(DIGITS / "train.csv"))
    model = zoo_tf.build_model(cfg, seed=0)
    opt = zoo_tf.make_optimizer({"name": "adam", "lr": 2e-3})

    @tf.function
    def step(batch):
        with tf.GradientTape() as tape:
            loss, count, _ = zoo_tf.batch_loss(model, batch, training=True)
            loss = loss / count
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))

    for epoch in range(epochs):
        for batch in batches(train, epoch_order(len(train), 0, epoch), 64, trim=False):
            step(zoo_tf.to_inputs(batch))
    zoo_tf.save_model(str(out), model, cfg, train.label_names)
    return out
