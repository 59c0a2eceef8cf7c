"""The benchmark document as markdown: machine, speed, accuracy, sweeps, goals."""

from .probe import THRESHOLDS, training_flops_per_sample
from .variants import REFERENCE

# Issue 5's goals, as (what, variant, row key, largest ratio to the reference row).
RATIO_GOALS = (
    ("NumPy epoch", "numpy", "epoch_ratio_to_torch", 0.7),
    ("JAX epoch", "jax", "epoch_ratio_to_torch", 0.4),
    ("NumPy one-digit inference", "numpy", "infer_one_ratio_to_torch", 0.3),
)
ACCURACY_GOALS = ((5, 0.98), (15, 0.983))
# Issue 15's goals: (what, variant, the row's ratio key or a sweep width, limit).
CPU_GOALS = (
    ("NumPy epoch", "numpy", "epoch_ratio_to_torch", 0.6),
    ("NumPy epoch at hidden width 4096", "numpy", 4096, 1.0),
    ("NumPy one-digit inference", "numpy", "infer_one_ratio_to_torch", 0.6),
    ("JAX whole-epoch scan", "jax", "epoch_ratio_to_torch", 0.4),
)
# Issue 6's goals for the JAX epoch: ratio to the reference row, and to the arithmetic limit.
JAX_EPOCH_GOAL = 0.35
ARITHMETIC_LIMIT_GOAL = 1.5
# Above this share of the CPU taken by other processes, the report warns.
SHARED_MACHINE = 0.05


def _num(value, digits=2, suffix=""):
    return "–" if value is None else f"{value:,.{digits}f}{suffix}"


def _ratio(value):
    return "–" if value is None else f"{value:.2f}×"


def _pct(value):
    return "–" if value is None else f"{value:.2%}"


def _seconds_to(value):
    return "not reached" if value is None else f"{value:.1f} s"


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def machine_line(doc):
    m = doc["machine"]
    gpus = ", ".join(m["gpus"]) or "no GPU"
    return (f"{m['cpu']}, {m['cores_logical']} logical cores ({m['cores_usable']} usable), {m['arch']}, "
            f"{gpus}, {m['os']}, Python {m['python']}")


def load_line(doc):
    """How much of the CPU other processes took during the run, with a warning when it matters."""
    m = doc["machine"]
    share = m.get("cpu_share_of_other_processes")
    start, end = m.get("load_average_at_start"), m.get("load_average_at_end")
    load = f"1-minute load average {start[0]:.2f} before, {end[0]:.2f} after" if start and end else ""
    if share is None:
        return f"Other processes: not measurable on this OS. {load}".strip() + "."
    text = f"Other processes used {share:.0%} of the machine's CPU time during the run ({load})"
    if share > SHARED_MACHINE:
        text += (". **The machine was shared with other work: threaded BLAS (NumPy, PyTorch) suffers "
                 "most; re-run on a quiet machine before trusting these timings.**")
    return text + "."


def blas_text(row):
    threads = row.get("threads") or {}
    blas = threads.get("blas")
    if isinstance(blas, list):
        pools = ", ".join(
            f"{p['internal_api']} {p['version']} ({p['num_threads']} threads"
            + (f", {p['threading_layer']}" if p.get("threading_layer") else "") + ")"
            for p in blas
        )
    else:
        pools = blas or "–"
    if "torch_intra_op" in threads:
        pools = f"{pools}; {threads['torch_intra_op']} intra-op / {threads['torch_inter_op']} inter-op threads"
    if "xla" in threads:
        pools = f"XLA's own thread pool (size not reported); NumPy: {pools}"
    env = threads.get("env")
    if env:
        pools += "; " + " ".join(f"{k}={v}" for k, v in env.items())
    return pools


def speed_section(doc):
    cfg = doc["config"]
    sizes = "-".join(str(n) for n in cfg["sizes"])
    rows = []
    for r in doc["rows"]:
        if r["status"] != "ok":
            rows.append([r["variant"], r["status"]] + ["–"] * 10)
            continue
        rows.append([
            r["variant"], r["options"],
            f"{r['epoch_seconds_median']:.3f} ({r['epoch_seconds_min']:.3f}–{r['epoch_seconds_max']:.3f})",
            _ratio(r["epoch_ratio_to_torch"]),
            f"{r['first_epoch_seconds']:.2f}",
            f"{r['samples_per_second']:,.0f}",
            f"{r['infer_one_us_median']:,.0f}",
            _ratio(r["infer_one_ratio_to_torch"]),
            f"{r['infer_test_set_ms_median']:,.1f}",
            f"{r['peak_rss_mib']:,.0f}",
            _num(r["device_memory_mib"], 0),
            _num(r["matmul_gflops"], 0),
        ])
    timed = cfg["speed"]["epochs"] - 1
    rounds = cfg["speed"].get("rounds", 1)
    rounds_text = (f" Every variant ran this phase {rounds} times, taking turns; each row shows its round "
                   "with the lowest median epoch, and its one-digit figure from the round where that was "
                   "lowest (all rounds are in the JSON)." if rounds > 1 else "")
    return "\n".join([
        f"## Speed: {sizes} ReLU, batch {cfg['batch']}, Adam 1e-3 constant (every row)",
        "",
        f"Seconds per epoch: median of {timed} epochs after a warm-up epoch (min–max), each a pass over "
        f"{cfg['counts']['train']:,} training images plus the validation pass over {cfg['counts']['val']:,}, "
        "as train.py reports it. The first epoch (compile included) is shown on its own. One digit: a "
        "host image in, host probabilities out, as the GUI does it (median of "
        f"{cfg['speed']['infer_repeats']}). Test set: {cfg['counts']['test']:,} images already on the device. "
        f"×{REFERENCE}: this row divided by the {REFERENCE} row (lower is faster). Peak RSS: the whole "
        f"child process of this phase.{rounds_text}",
        "",
        _table(["variant", "options", "epoch s (min–max)", f"×{REFERENCE}", "first epoch s", "samples/s",
                "one digit µs", f"×{REFERENCE}", "test set ms", "peak RSS MiB", "device MiB", "matmul GFLOP/s"],
               rows),
    ])


def accuracy_section(doc):
    rows = []
    for r in doc["rows"]:
        status = r["phase_status"]["accuracy"]
        if status != "ok":
            rows.append([r["variant"], status, "–", "–", "–", "–"])
            continue
        for run in r["accuracy_runs"]:
            ran = run["epochs"] if run["epochs_run"] == run["epochs"] else f"{run['epochs_run']} of {run['epochs']} (early stop)"
            rows.append([r["variant"], run["recipe"], ran, _pct(run["test_accuracy"]),
                         *(_seconds_to(run["seconds_to"][f"{t * 100:.1f}"]) for t in THRESHOLDS)])
    return "\n".join([
        "## Accuracy: each library's default recipe",
        "",
        "xpnet rows use train.py's defaults (the recipe column says which); the PyTorch reference uses "
        "Adam 1e-3 constant, read at each epoch count of one run. Test accuracy of the weights the run "
        "ends with; time to a threshold: wall seconds of training (compile included, test evaluation "
        "excluded) until the test accuracy after an epoch first reaches it. One seed "
        f"({doc['config']['seed']}).",
        "",
        _table(["variant", "recipe", "epochs", "test accuracy",
                *(f"time to {t:.1%}" for t in THRESHOLDS)], rows),
    ])


def sweep_section(doc):
    cfg = doc["config"]
    ok = [r for r in doc["rows"] if r["sweep"]]
    if not ok:
        return "## How cost grows\n\nNo sweep ran."

    def table(kind, label, key):
        points = {r["variant"]: {key(p): p for p in r["sweep"][kind]} for r in ok}
        values = cfg["sweep"]["widths" if kind == "width" else "batches"]
        body = [[v] + [
            f"{points[r['variant']][v]['epoch_seconds']:.3g} s ({points[r['variant']][v]['fraction_of_ceiling']:.0%})"
            if v in points[r["variant"]] else "–" for r in ok] for v in values]
        return _table([label] + [r["variant"] for r in ok], body)

    sweep = cfg["sweep"]
    ceiling = doc["matmul_ceiling_gflops"]
    return "\n".join([
        "## How cost grows",
        "",
        f"Seconds per training epoch of {cfg['counts']['train']:,} images, extrapolated: {sweep['steps']} "
        f"training steps timed (fewer where the batch is large), the fastest of {sweep['repeats']} repeats after a "
        "warm-up, times the steps in an epoch; no validation pass. In brackets: the fraction of the matmul "
        f"ceiling ({ceiling:,.0f} GFLOP/s, the fastest float32 {cfg['speed']['matmul_n']}² matmul any library "
        "did in this run) that the epoch's FLOPs reach; FLOPs per sample are 2·Σ in·out forward and about "
        "twice that backward (no dx for the input layer). Adam 1e-3, one seed.",
        "",
        f"Hidden width H, model 784-H-H/2-10 (H = 128 is the default model), batch {cfg['batch']}:",
        "",
        table("width", "H", lambda p: p["sizes"][1]),
        "",
        f"Batch size, model {'-'.join(str(n) for n in cfg['sizes'])}:",
        "",
        table("batch", "batch", lambda p: p["batch"]),
    ])


def goals_section(doc):
    by_name = {r["variant"]: r for r in doc["rows"]}
    lines = [f"## Goals of issue 5 (ratio to {REFERENCE} in this run)", ""]
    for what, name, key, limit in RATIO_GOALS:
        value = by_name.get(name, {}).get(key)
        verdict = "not measured" if value is None else ("met" if value <= limit else "not met")
        lines.append(f"- {what} ≤ {limit}× {REFERENCE}: {_ratio(value)}, {verdict}")
    for name in ("numpy", "jax"):
        runs = {run["epochs"]: run for run in by_name.get(name, {}).get("accuracy_runs", [])}
        for epochs, target in ACCURACY_GOALS:
            run = runs.get(epochs)
            if run is None:
                continue
            verdict = "met" if run["test_accuracy"] >= target else "not met"
            lines.append(f"- {name}, default recipe, {target:.1%} in {epochs} epochs: "
                         f"{_pct(run['test_accuracy'])} (one seed), {verdict}")
    return "\n".join(lines)


def cpu_goals_section(doc):
    """Issue 15: the NumPy backend (and the JAX scan) against PyTorch eager, ratios of this run."""
    by_name = {r["variant"]: r for r in doc["rows"] if r["status"] == "ok"}
    lines = [f"## Goals of issue 15 (ratio to {REFERENCE} in this run)", ""]
    for what, name, key, limit in CPU_GOALS:
        if isinstance(key, int):  # a width of the sweep: this row's epoch over the reference row's
            widths = {n: {p["sizes"][1]: p["epoch_seconds"] for p in by_name[n]["sweep"]["width"]}
                      for n in (name, REFERENCE) if by_name.get(n, {}).get("sweep")}
            value = (widths[name][key] / widths[REFERENCE][key]
                     if len(widths) == 2 and all(key in w for w in widths.values()) else None)
        else:
            value = by_name.get(name, {}).get(key)
        verdict = "not measured" if value is None else ("met" if value <= limit else "not met")
        lines.append(f"- {what} ≤ {limit}× {REFERENCE}: {_ratio(value)}, {verdict}")
    lines.append("- the optimizer's share of a step and a busy machine: `python -m benchmarks.step_split`, "
                 "`python -m benchmarks.busy`")
    return "\n".join(lines)


def epoch_flops(doc, exact=True):
    """FLOPs of one timed epoch: training on every training image plus the validation forward.

    ``exact`` counts no dx for the input layer; otherwise backward is twice
    the forward, the usual 6 x parameters x samples rule.
    """
    cfg = doc["config"]
    sizes = cfg["sizes"]
    forward = sum(2 * i * o for i, o in zip(sizes[:-1], sizes[1:]))
    per_sample = training_flops_per_sample(sizes) if exact else 3 * forward
    return per_sample * cfg["counts"]["train"] + forward * cfg["counts"]["val"]


def jax_goals_section(doc):
    """Issue 6: JAX's scan epoch against PyTorch eager and against the machine's arithmetic limit."""
    ceiling = doc.get("matmul_ceiling_gflops")
    by_name = {r["variant"]: r for r in doc["rows"] if r["status"] == "ok"}
    jax_rows = [by_name[n] for n in ("jax", "jax-manual", "jax-step") if n in by_name]
    if not ceiling or not jax_rows:
        return "## Goals of issue 6\n\nNo JAX row or no matmul ceiling in this run."
    exact, usual = epoch_flops(doc), epoch_flops(doc, exact=False)
    limit, usual_limit = exact / ceiling / 1e9, usual / ceiling / 1e9
    lines = [
        f"## Goals of issue 6 (JAX epoch against {REFERENCE} and against the arithmetic limit)",
        "",
        f"Arithmetic limit: the FLOPs of one timed epoch over the matmul ceiling ({ceiling:,.0f} GFLOP/s). "
        f"Counted exactly (no dx for the input layer, validation forward included) an epoch is "
        f"{exact / 1e9:.1f} GFLOP, {limit:.3f} s; with backward counted as twice the forward, "
        f"{usual / 1e9:.1f} GFLOP, {usual_limit:.3f} s.",
        "",
    ]
    for r in jax_rows:
        seconds, ratio = r["epoch_seconds_median"], r["epoch_ratio_to_torch"]
        verdict = "" if ratio is None else ", met" if ratio <= JAX_EPOCH_GOAL else ", not met"
        within = "met" if seconds / usual_limit <= ARITHMETIC_LIMIT_GOAL else "not met"
        within_exact = "met" if seconds / limit <= ARITHMETIC_LIMIT_GOAL else "not met"
        lines.append(
            f"- {r['variant']} ({r['options']}): {seconds:.3f} s per epoch, {_ratio(ratio)} {REFERENCE} "
            f"(goal ≤ {JAX_EPOCH_GOAL}×{verdict}); {seconds / limit:.2f}× the exact limit ({within_exact}), "
            f"{seconds / usual_limit:.2f}× the usual count ({within}; goal ≤ {ARITHMETIC_LIMIT_GOAL}×)"
        )
    return "\n".join(lines)


def setup_section(doc):
    rows = []
    for r in doc["rows"]:
        if r["status"] != "ok":
            continue
        versions = ", ".join(f"{k} {v}" for k, v in (r["versions"] or {}).items())
        rows.append([r["variant"], r["device"], versions, blas_text(r)])
    return "\n".join(["## Setup of each row", "", _table(["variant", "device", "versions", "threads and BLAS"], rows)])


def source_words(doc):
    source = doc.get("source")  # absent from runs before 2026-12-03
    return f" at commit {source}" if source else ""


def markdown(doc):
    m = doc["machine"]
    cfg = doc["config"]
    header = [
        f"# xpnet benchmark, {doc['created'][:10]}, {m['cpu']} ({m['cores_usable']} cores)",
        "",
        f"Machine: {machine_line(doc)}.  ",
        f"{load_line(doc)}  ",
        f"Run: `{doc['command']}` ({doc['mode']} mode){source_words(doc)}, started {doc['created']}, "
        f"{doc['wall_seconds'] / 60:.1f} minutes in all. Real MNIST: "
        f"{cfg['counts']['train']:,} train / {cfg['counts']['val']:,} validation / {cfg['counts']['test']:,} test "
        "images. Each variant and phase ran in a process of its own, one after another.",
    ]
    sections = [speed_section(doc), accuracy_section(doc), sweep_section(doc), goals_section(doc),
                jax_goals_section(doc), cpu_goals_section(doc), setup_section(doc)]
    return "\n\n".join(["\n".join(header), *sections]) + "\n"
