"""Fuzzing the loaders: thousands of mutated valid files, and the only failure is XpnetError.

Each example starts from a valid file (``.npz``, ``.safetensors``, or a
checkpoint) and damages it: byte flips, truncation, inserted or deleted
bytes, or a rebuilt container whose JSON record or arrays were edited (so
the checks behind a valid container are reached too). Loading must either
give a well-formed model or raise XpnetError: no other exception, no hang
(a per-example deadline, and a watchdog that kills a stuck run).
"""

import faulthandler
import io
import json
from datetime import timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from backends import XpnetError
from nn import MLP, Adam, EarlyStopping
from nn.checkpoint import read_checkpoint, save_checkpoint
from nn.serialize import load_model
from nn.training import TrainState

EXAMPLES_PER_FORMAT = 1100  # two model formats: 2,200 files, plus the checkpoints
MODELS = (
    MLP(sizes=(6, 5, 3)),
    MLP(sizes=(4, 3, 3, 2), activations=("tanh", "sigmoid"), loss="mse", output="linear", dropout=0.1),
)


def _params(model, seed=0):
    rng = np.random.default_rng(seed)
    return [{k: (v + rng.normal(0, 0.1, v.shape)).astype(np.float32) for k, v in layer.items()}
            for layer in model.init_params(seed)]


def _architecture(model):
    return {"format": "xpnet-mlp", "version": 1, **model.config()}


def _container(suffix, architecture_text, arrays):
    """A well-formed file of the format, whatever its record and arrays say."""
    if suffix == ".safetensors":
        from safetensors.numpy import save

        return save(arrays, metadata={"architecture": architecture_text})
    buffer = io.BytesIO()
    np.savez(buffer, architecture=np.array(architecture_text), **arrays)
    return buffer.getvalue()


def _tensors(model):
    return {f"layers.{i}.{k}": layer[k] for i, layer in enumerate(_params(model)) for k in ("w", "b")}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
field_names = st.sampled_from(["sizes", "activations", "output", "loss", "dropout", "reg", "reg_lambda",
                               "init", "format", "version", "extra"])
array_dtypes = st.sampled_from([np.float32, np.float64, np.float16, np.int32, np.int64, np.uint8, np.bool_])
shapes = st.lists(st.integers(0, 7), max_size=3).map(tuple)

byte_mutation = st.one_of(
    st.tuples(st.just("flip"), st.lists(st.tuples(st.integers(0, 2**20), st.integers(1, 255)), min_size=1, max_size=8)),
    st.tuples(st.just("truncate"), st.integers(0, 2**20)),
    st.tuples(st.just("insert"), st.integers(0, 2**20), st.binary(min_size=1, max_size=24)),
    st.tuples(st.just("delete"), st.integers(0, 2**20), st.integers(1, 64)),
)
record_mutation = st.one_of(
    st.tuples(st.just("set"), field_names, json_values),
    st.tuples(st.just("drop"), field_names),
    st.tuples(st.just("text"), st.text(max_size=40)),
    st.tuples(st.just("json"), json_values),
    st.tuples(st.just("cut"), st.integers(0, 400)),
)
array_mutation = st.one_of(
    st.tuples(st.just("replace"), st.integers(0, 5), array_dtypes, shapes),
    st.tuples(st.just("drop"), st.integers(0, 5)),
    st.tuples(st.just("add"), st.text(max_size=10), array_dtypes, shapes),
    st.tuples(st.just("nan"), st.integers(0, 5)),
)
mutations = st.one_of(
    st.tuples(st.just("bytes"), byte_mutation),
    st.tuples(st.just("record"), record_mutation),
    st.tuples(st.just("arrays"), array_mutation),
    st.tuples(st.just("bytes-twice"), st.tuples(byte_mutation, byte_mutation)),
)


def mutate_bytes(data, mutation):
    kind, *rest = mutation
    if not data:
        return data
    if kind == "flip":
        out = bytearray(data)
        for position, xor in rest[0]:
            out[position % len(out)] ^= xor
        return bytes(out)
    if kind == "truncate":
        return data[: rest[0] % len(data)]
    if kind == "insert":
        at = rest[0] % (len(data) + 1)
        return data[:at] + rest[1] + data[at:]
    at = rest[0] % len(data)
    return data[:at] + data[at + rest[1]:]


def mutate_record(record, mutation):
    kind, *rest = mutation
    if kind == "set":
        return json.dumps({**record, rest[0]: rest[1]})
    if kind == "drop":
        return json.dumps({k: v for k, v in record.items() if k != rest[0]})
    if kind == "text":
        return rest[0]
    if kind == "json":
        return json.dumps(rest[0])
    return json.dumps(record)[: rest[0]]


def mutate_arrays(arrays, mutation):
    arrays = dict(arrays)
    names = sorted(arrays)
    kind, *rest = mutation
    name = names[rest[0] % len(names)] if kind != "add" else rest[0] or "x"
    if kind in ("replace", "add"):
        arrays[name] = np.ones(rest[2], dtype=rest[1])
    elif kind == "drop":
        arrays.pop(name)
    else:
        arrays[name] = arrays[name].copy()
        arrays[name].flat[0] = np.nan
    return arrays


def _mutated_model_file(suffix, model_index, mutation):
    model = MODELS[model_index]
    record, arrays = _architecture(model), _tensors(model)
    where, change = mutation
    if where == "record":
        return _container(suffix, mutate_record(record, change), arrays)
    if where == "arrays":
        return _container(suffix, json.dumps(record), mutate_arrays(arrays, change))
    data = _container(suffix, json.dumps(record), arrays)
    for one in (change if where == "bytes-twice" else (change,)):
        data = mutate_bytes(data, one)
    return data


@pytest.fixture
def watchdog():
    """A hang is a failure too: dump the stacks and end the run if the test never returns."""
    faulthandler.dump_traceback_later(300, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def _fuzz(check, strategy, examples, explicit=()):
    seen = []

    @settings(max_examples=examples, deadline=timedelta(seconds=2), database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def run(case):
        check(case)
        seen.append(1)

    for case in explicit:  # known hard cases first, then the random ones
        run = example(case)(run)
    run()
    return len(seen)


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_mutated_model_files_load_or_fail_cleanly(suffix, tmp_path, watchdog):
    path = tmp_path / f"model{suffix}"
    outcomes = {"loaded": 0, "refused": 0}

    def check(example):
        model_index, mutation = example
        path.write_bytes(_mutated_model_file(suffix, model_index, mutation))
        try:
            model, params = load_model(path)
        except XpnetError as exc:
            assert "\n" not in str(exc) and str(path) in str(exc)
            outcomes["refused"] += 1
            return
        # Something that still loads must be a complete, usable model.
        assert isinstance(model, MLP) and len(params) == len(model.sizes) - 1
        for (fan_in, fan_out), layer in zip(zip(model.sizes[:-1], model.sizes[1:]), params):
            assert layer["w"].shape == (fan_in, fan_out) and layer["b"].shape == (fan_out,)
            assert layer["w"].dtype == np.float32 and np.isfinite(layer["w"]).all()
        outcomes["loaded"] += 1

    count = _fuzz(check, st.tuples(st.integers(0, len(MODELS) - 1), mutations), EXAMPLES_PER_FORMAT)
    assert count >= 1000, f"only {count} mutated files were tried"
    assert outcomes["refused"] > 0.5 * count, outcomes  # the mutations really damage files


def _valid_checkpoint(folder):
    model, optimizer = MODELS[0], Adam()
    params = _params(model)
    stopping = EarlyStopping(patience=2, best_loss=0.5, best_epoch=1, best_params=_params(model, 1))
    history = [{"epoch": 1, "train_loss": 0.7, "val_loss": 0.5}]
    state = TrainState(seed=0, epoch=1, step=3, steps_per_epoch=5, params=params, opt_state=optimizer.init(params),
                       history=history, early_stopping=stopping,
                       partial=(np.float32(1.5), np.int64(4)))
    return save_checkpoint(folder, state, {"note": "fuzz"}), model, optimizer


checkpoint_fields = st.sampled_from(["format", "version", "epoch", "step", "steps_per_epoch", "stopped", "rng",
                                     "early_stopping", "history", "run", "extra"])
checkpoint_mutations = st.one_of(
    st.tuples(st.just("bytes"), byte_mutation),
    st.tuples(st.just("set"), checkpoint_fields, json_values),
    st.tuples(st.just("nested"), st.sampled_from(["rng", "early_stopping"]),
              st.sampled_from(["seed", "patience", "min_delta", "restore_best", "best_loss", "best_epoch", "waited"]),
              json_values),
    st.tuples(st.just("arrays"), array_mutation),
)


def test_mutated_checkpoints_load_or_fail_cleanly(tmp_path, watchdog):
    from safetensors.numpy import save

    from nn.serialize import read_safetensors

    path, model, optimizer = _valid_checkpoint(tmp_path / "ck")
    valid = path.read_bytes()
    metadata, arrays = read_safetensors(path)
    meta = json.loads(metadata["xpnet-checkpoint"])
    target = tmp_path / "fuzz"
    target.mkdir()

    def check(mutation):
        kind, *rest = mutation
        if kind == "bytes":
            data = mutate_bytes(valid, rest[0])
        elif kind == "arrays":
            data = save(mutate_arrays(arrays, rest[0]), metadata=metadata)
        else:
            edited = json.loads(json.dumps(meta))
            if kind == "set":
                edited[rest[0]] = rest[1]
            else:
                edited[rest[0]][rest[1]] = rest[2]
            data = save(arrays, metadata={"xpnet-checkpoint": json.dumps(edited)})
        (target / path.name).write_bytes(data)
        try:
            state = read_checkpoint(target).train_state(model, optimizer)
        except XpnetError as exc:
            assert "\n" not in str(exc)
            return
        assert len(state.params) == 2 and state.step < state.steps_per_epoch

    huge = [("set", "epoch", 10**9), ("set", "steps_per_epoch", 2**62), ("set", "step", 4),
            ("set", "history", [{"epoch": 1}] * 10**5), ("nested", "rng", "seed", 2**70)]
    assert _fuzz(check, checkpoint_mutations, 600, explicit=huge) >= 600
