"""The Keras backend of a process (committee/backend.py): chosen by option or KERAS_BACKEND,
set up before Keras is used, and a JAX process trains, saves and loads members — including
one saved under TensorFlow — and writes TensorBoard files without ever importing TensorFlow."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from committee.training import backend

pytest.importorskip("jax")


def test_a_jax_process_trains_saves_and_loads_members_without_tensorflow(tmp_path):
    from committee.members import spec as members
    from committee.training.checkpoint import save_checkpoint
    from committee.training.device import configure_tensorflow
    from committee.training.loop import train_member
    from committee.training.prediction import predict_proba

    # A member trained and saved under TensorFlow (this process), to load under JAX.
    configure_tensorflow(threads=1)
    x = np.random.default_rng(0).random((96, 28, 28, 1), dtype=np.float32)
    y = np.arange(96) % 10
    model, state = train_member(
        members.SEED_PRESET[0].with_overrides(epochs=1), x, y, x[:32], y[:32], verbose=0
    )
    save_checkpoint(tmp_path / "tf", model, state)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "tf_proba.npy", predict_proba(model, x[:8]))

    script = textwrap.dedent(f"""
        import json, sys
        import numpy as np
        from committee.training import backend
        from committee.members import spec as members
        backend.configure("jax", threads=1)
        from committee.training.prediction import predict_proba
        from committee.training.checkpoint import load_checkpoint, save_checkpoint
        from committee.training.loop import train_member
        x = np.load({str(tmp_path / "x.npy")!r}); y = np.arange(96) % 10
        out = {{}}
        for spec in (members.STRONG_PRESET[1],):  # its batches augmented (PyDataset)
            from committee.training.tensorboard import tensorboard_callback
            model, state = train_member(spec.with_overrides(epochs=1, batch_size=32), x, y,
                                        x[:32], y[:32], verbose=0, callbacks=[
                                            tensorboard_callback({str(tmp_path / "tb")!r})])
            save_checkpoint({str(tmp_path)!r} + "/" + spec.name, model, state)
            loaded, _ = load_checkpoint({str(tmp_path)!r} + "/" + spec.name)
            out[spec.name] = float(np.abs(predict_proba(loaded, x[:8], tta=spec.tta)
                                          - predict_proba(model, x[:8], tta=spec.tta)).max())
        tf_model, _ = load_checkpoint({str(tmp_path / "tf")!r})
        out["from_tf"] = float(np.abs(predict_proba(tf_model, x[:8])
                                      - np.load({str(tmp_path / "tf_proba.npy")!r})).max())
        import keras
        out["backend"] = keras.config.backend()
        out["tensorflow"] = "tensorflow" in sys.modules
        print(json.dumps(out))
    """)
    env = {**os.environ, **backend.process_env("jax", threads=1)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["backend"] == "jax" and out["tensorflow"] is False
    assert out["resnet"] < 1e-6  # saved and loaded exactly
    assert out["from_tf"] < 1e-4  # a TensorFlow-trained member predicts alike under JAX
    for part in ("train", "validation"):  # TensorBoard's files, written without TensorFlow
        events = list((tmp_path / "tb" / part).glob("events.out.tfevents.*"))
        assert events and events[0].stat().st_size > 100, part


def test_configure_refuses_a_keras_imported_with_another_backend():
    with pytest.raises(RuntimeError, match=r"KERAS_BACKEND must be set before keras is imported"):
        backend.configure("jax")  # this test process imported Keras on TensorFlow
