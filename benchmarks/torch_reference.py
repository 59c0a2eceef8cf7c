"""The reference: the same MLP written as a PyTorch user would write it.

Tensors preloaded on the device, a fresh ``torch.randperm`` per epoch, plain
slicing (no per-item DataLoader), ``nn.Sequential`` of Linear and ReLU with
He init (kaiming normal, fan_in, relu; zero bias), Adam, cross-entropy.
Run by an interpreter that has torch (``--torch-python``), as
``python -m benchmarks.torch_reference SPEC RESULT``; it needs nothing but
torch and the standard library, so NumPy is not even imported.

Its accuracy recipe is the reference one, Adam 1e-3 constant, batch 128: one
run as long as the longest requested, read at each requested epoch.
"""

import time

import torch
import torch.nn.functional as F

from . import probe



def recipe(spec):
    return f"Adam 1e-3 constant, batch {spec['batch']}, he init (reference)"


def device():
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def synchronize():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def load_split(spec, split, dev):
    """(x, y) of one split from the raw little-endian arrays the parent wrote."""
    n = spec["counts"][split]
    with open(f"{spec['data_dir']}/x_{split}.f32", "rb") as f:
        x = torch.frombuffer(bytearray(f.read()), dtype=torch.float32).reshape(n, -1)
    with open(f"{spec['data_dir']}/y_{split}.i32", "rb") as f:
        y = torch.frombuffer(bytearray(f.read()), dtype=torch.int32).long()
    return x.to(dev), y.to(dev)


def make_model(sizes, dev):
    layers = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        linear = torch.nn.Linear(fan_in, fan_out)
        torch.nn.init.kaiming_normal_(linear.weight, mode="fan_in", nonlinearity="relu")
        torch.nn.init.zeros_(linear.bias)
        layers.append(linear)
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers).to(dev)


def train_epoch(model, optimizer, x, y, batch_size):
    """One pass over (x, y) in a fresh random order; returns the mean training loss."""
    model.train()
    order = torch.randperm(len(x), device=x.device)
    total = torch.zeros((), device=x.device)
    for start in range(0, len(x), batch_size):
        idx = order[start : start + batch_size]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.detach() * len(idx)
    return total.item() / len(x)


@torch.no_grad()
def accuracy(model, x, y):
    model.eval()
    return (model(x).argmax(dim=1) == y).float().mean().item()


def fit(spec, sizes, x, y, x_val, y_val, epochs, batch_size, on_epoch=None):
    """Train for ``epochs``; returns the model and each epoch's seconds (validation included)."""
    torch.manual_seed(spec["seed"])
    model = make_model(sizes, x.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    seconds = []
    for _ in range(epochs):
        started = time.perf_counter()
        train_epoch(model, optimizer, x, y, batch_size)
        if x_val is not None:
            accuracy(model, x_val, y_val)
        synchronize()
        seconds.append(time.perf_counter() - started)
        if on_epoch is not None:
            on_epoch(model)
    return model, seconds


def _tick(_model):
    probe.tick()


# -- phases ----------------------------------------------------------------------
def _check_options(spec):
    options = {**spec["variant"].get("fit", {}), **spec["variant"].get("backend_options", {})}
    if options:
        raise probe.Unsupported(f"the PyTorch reference takes no options ({', '.join(options)})")


def speed(spec):
    dev = device()
    cfg = spec["speed"]
    x, y = load_split(spec, "train", dev)
    x_val, y_val = load_split(spec, "val", dev)
    x_test, _ = load_split(spec, "test", dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    model, seconds = fit(spec, spec["sizes"], x, y, x_val, y_val, cfg["epochs"], spec["batch"], on_epoch=_tick)

    model.eval()
    digit = x_test[:1].cpu()

    @torch.inference_mode()
    def predict_one():
        # What a GUI does: a host image in, host probabilities out.
        return torch.softmax(model(digit.to(dev)), dim=1).cpu()

    @torch.inference_mode()
    def predict_all():
        out = torch.softmax(model(x_test), dim=1)
        synchronize()
        return out

    one = probe.time_calls(predict_one, cfg["infer_repeats"], warmup=20)
    whole = probe.time_calls(predict_all, cfg["test_set_repeats"], warmup=1)
    probe.tick()
    matmul = matmul_gflops(dev, cfg["matmul_n"], cfg["matmul_repeats"])
    probe.tick()
    memory = torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else None
    return probe.speed_result(
        recipe=recipe(spec), device=describe_device(dev), epoch_seconds=seconds, n_train=len(x),
        one_seconds=one, test_set_seconds=whole, matmul_gflops=matmul, device_memory_mib=memory,
        threads=threads(), versions={"torch": torch.__version__},
    )


def matmul_gflops(dev, n, repeats):
    a = torch.randn(n, n, device=dev)
    b = torch.randn(n, n, device=dev)

    def matmul():
        out = a @ b
        synchronize()
        return out

    return probe.matmul_gflops(probe.time_calls(matmul, repeats, warmup=1), n)


def describe_device(dev):
    if dev.type == "cuda":
        return f"{torch.cuda.get_device_name()}, PyTorch {torch.__version__}"
    return f"CPU, PyTorch {torch.__version__}"


def threads():
    config = torch.__config__.show()
    blas = next((part.split("=", 1)[1] for part in config.replace(",", " ").split() if part.startswith("BLAS_INFO=")), "?")
    return {
        "usable_cores": probe.usable_cores(),
        "env": probe.thread_env(),
        "torch_intra_op": torch.get_num_threads(),
        "torch_inter_op": torch.get_num_interop_threads(),
        "blas": blas,
    }


def accuracy_phase(spec):
    dev = device()
    x, y = load_split(spec, "train", dev)
    x_val, y_val = load_split(spec, "val", dev)
    x_test, y_test = load_split(spec, "test", dev)
    requested = spec["accuracy"]["epochs"]
    test_accuracy = []

    def watch(model):
        # Outside the epoch's clock: fit() has already recorded its seconds.
        test_accuracy.append(accuracy(model, x_test, y_test))
        probe.tick()

    _, seconds = fit(spec, spec["sizes"], x, y, x_val, y_val, max(requested), spec["batch"], on_epoch=watch)
    curve = probe.accuracy_curve(seconds, test_accuracy)
    runs = []
    for epochs in requested:
        upto = curve[:epochs]
        runs.append({
            "epochs": epochs,
            "epochs_run": epochs,
            "recipe": recipe(spec),
            "test_accuracy": upto[-1]["test_accuracy"],
            "curve": upto,
            "seconds_to": probe.time_to_reach(upto),
        })
    return {"runs": runs}


def sweep(spec):
    dev = device()
    cfg = spec["sweep"]
    x, y = load_split(spec, "train", dev)
    n_train = len(x)

    def point(sizes, batch):
        steps = max(1, min(cfg["steps"], n_train // batch))
        n = steps * batch
        _, seconds = fit(spec, sizes, x[:n], y[:n], None, None, 1 + cfg["repeats"], batch)
        probe.tick()
        point = probe.sweep_point(sizes, batch, n_train, min(seconds[1:]) / steps)
        return {**point, "steps_timed": steps}

    return {
        "width": [point(probe.sweep_sizes(w), spec["batch"]) for w in cfg["widths"]],
        "batch": [point(spec["sizes"], b) for b in cfg["batches"]],
    }


PHASES = {"speed": speed, "accuracy": accuracy_phase, "sweep": sweep}


def run_phase(spec):
    _check_options(spec)
    return PHASES[spec["phase"]](spec)


if __name__ == "__main__":
    probe.child_main(run_phase)
