"""Training throughput of the quickstart's tokenizer per thread setting, with and without other
processes competing for the cores: the measurement behind diffvq's `threads` default (issue 10).

    python bench/threads.py                                    # all of it (about 4 min on 2 cores)
    python bench/threads.py --steps 5 --repeats 1 --loads 0,2  # a smoke run
    python bench/threads.py --configs 1,2,2-api,2-passive,default --loads 8

Every configuration runs in a fresh process (libgomp reads OMP_* once, when torch is loaded):

    N          OMP_NUM_THREADS=N MKL_NUM_THREADS=N in the environment, torch.set_num_threads(N)
    N-api      torch.set_num_threads(N) only, as a setting applied after `import torch` would
    default    nothing set: torch's own choice
    ...-passive  also OMP_WAIT_POLICY=PASSIVE (idle OpenMP threads sleep instead of spinning)

A load of L is L background Python processes spinning (each bounded in time, killed when the
load's configurations are done, and gone within milliseconds if this script dies); they start
before the first configuration at that load, and the table shows the 1-minute load average
(os.getloadavg) after each configuration. The measured process builds the recipe's exact tokenizer
(default recipes/quickstart.yaml; the train split is loaded once, by the data set's
load("train") and the modality's to_model, and handed over as a temporary .npy) and trains it
with diffvq.trainer.Trainer and Batches, the recipe's `train.tokenizer` settings and the
precision the recipe resolves to on this machine, no checkpoints, no progress bar. After
`--warmup` steps (k-means initialisation of the codebook, allocation) it times `--repeats`
windows of `--steps` steps; the table shows the median. A collapsed setting is not waited for:
a window ends after max-seconds / repeats and timing after --max-seconds (marked `*`, steps/s
from the steps done).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT",
              "KMP_BLOCKTIME", "DIFFVQ_THREADS")
DEFAULT_CONFIGS = "1,2,2-passive,default"
PROBE_N, PROBE_GAP_S = 200, 0.002

# A background load: busy-loops until its deadline, or at once when its parent (this script) is
# gone (a SIGKILL of this script leaves nothing behind for longer than a few milliseconds).
SPIN = """
import ctypes, os, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the script, which kills these
end, parent = time.monotonic() + float(sys.argv[1]), int(sys.argv[2])
try:  # Linux: SIGKILL when the script dies
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
except (OSError, AttributeError):
    pass
while time.monotonic() < end and os.getppid() == parent:
    for _ in range(100000):
        pass
"""


# -- configurations ---------------------------------------------------------------------------
def parse_config(name: str) -> dict:
    head, *mods = name.strip().split("-")
    if head != "default" and not (head.isdigit() and int(head) > 0):
        raise argparse.ArgumentTypeError(f"config {name!r}: expected N or 'default', then "
                                         f"-passive / -api")
    if set(mods) - {"passive", "api"} or len(set(mods)) != len(mods) or (
            head == "default" and "api" in mods):
        raise argparse.ArgumentTypeError(f"config {name!r}: modifiers are -passive and -api "
                                         f"(N-api only)")
    return {"name": name.strip(), "threads": None if head == "default" else int(head),
            "env": "api" not in mods, "passive": "passive" in mods}


def child_env(cfg: dict) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in THREAD_ENV}
    if cfg["threads"] is not None and cfg["env"]:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(cfg["threads"])
    if cfg["passive"]:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    return env


# -- the measured process ---------------------------------------------------------------------
class _Stop(Exception):
    pass


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def die_with_parent(parent: int) -> None:
    """Linux: SIGKILL this process when `parent` dies (else a check at every step does it)."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        raise SystemExit("bench/threads.py went away")


def child(args: argparse.Namespace) -> None:
    cfg = json.loads(args.child)
    parent = args.parent
    die_with_parent(parent)
    import numpy as np
    import torch

    if cfg["threads"] is not None:
        torch.set_num_threads(cfg["threads"])
    intended = torch.get_num_threads()  # the configuration's, or torch's default
    from diffvq import recipe as recipe_mod
    from diffvq.runtime import resolve_precision, select_device
    from diffvq.trainer import Batches, Trainer

    recipe, _ = recipe_mod.load(args.recipe)
    device = select_device(recipe.device)
    precision = resolve_precision(recipe.precision, device)
    x = torch.from_numpy(np.load(args.data))  # the parent's dataset.load("train") -> to_model
    train = recipe.tokenizer_train
    total = args.warmup + args.repeats * args.steps
    tcfg = train.model_copy(update={"steps": total, "checkpoint_every_s": 1e9})
    window_budget = args.max_seconds / args.repeats
    warmup_budget = args.max_seconds / 2

    marks: list[tuple[int, float, float]] = []  # (step, wall, cpu) where a window starts/ends
    state = {"start": 0.0, "warm": True}

    class TimedBatches(Batches):
        def batch(self, step, dev):
            now = time.perf_counter()
            if os.getppid() != parent:
                raise SystemExit("bench/threads.py went away")
            if state["warm"]:
                # warm-up: `--warmup` steps, or at least 2 once past half of --max-seconds
                if step >= args.warmup or (step >= 2 and now - state["start"] > warmup_budget):
                    state["warm"] = False
                    marks.append((step, now, cpu_seconds()))
            else:
                s0, t0, _ = marks[-1]
                if step - s0 >= args.steps or now - t0 > window_budget:
                    marks.append((step, now, cpu_seconds()))
                    # done: all windows, or a collapsed setting past --max-seconds in all
                    if len(marks) > args.repeats or now - marks[0][1] > args.max_seconds:
                        raise _Stop
            return super().batch(step, dev)

    torch.manual_seed(recipe.seed)
    tok = recipe.tokenizer.cls(input_shape=tuple(x.shape[1:]), **recipe.tokenizer.params)
    trainer = Trainer(tcfg, device=device, precision=precision, seed=recipe.seed, workdir=None,
                      progress=False)
    batches = TimedBatches({"x": x}, train.batch_size, recipe.seed)
    overridden = torch.get_num_threads() != intended  # diffvq itself set threads on the way
    torch.set_num_threads(intended)
    state["start"] = time.perf_counter()
    try:
        result = trainer.fit(tok, batches)
        if device.type == "cuda":
            torch.cuda.synchronize()
        marks.append((result.steps, time.perf_counter(), cpu_seconds()))
    except _Stop:
        pass
    windows = [{"steps": s1 - s0, "wall_s": t1 - t0, "cpu_s": c1 - c0}
               for (s0, t0, c0), (s1, t1, c1) in zip(marks, marks[1:])]
    print(json.dumps({"threads": torch.get_num_threads(), "device": str(device),
                      "precision": precision, "warmup_steps": marks[0][0], "windows": windows,
                      "wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                      "diffvq_set_threads": overridden}))


def probe() -> None:
    """Do idle OpenMP threads spin? Small parallel matmuls with serial gaps between them: CPU
    seconds well above the matmuls' own mean the workers spin through the gaps."""
    import torch

    a = torch.randn(256, 256)
    for _ in range(20):
        a @ a
    w, c = time.perf_counter(), cpu_seconds()
    for _ in range(PROBE_N):
        a @ a
        time.sleep(PROBE_GAP_S)
    print(json.dumps({"threads": torch.get_num_threads(), "wall_s": time.perf_counter() - w,
                      "cpu_s": cpu_seconds() - c}))


def run_probe(passive: bool) -> dict:
    cfg = {"name": "probe", "threads": None, "env": True, "passive": passive}
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--probe"],
                          env=child_env(cfg), capture_output=True, text=True, timeout=300)
    if done.returncode:
        raise SystemExit(f"OMP_WAIT_POLICY probe failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- the driver -------------------------------------------------------------------------------
def start_load(n: int, seconds: float) -> list[subprocess.Popen]:
    procs: list[subprocess.Popen] = []
    try:
        for _ in range(n):
            procs.append(subprocess.Popen([sys.executable, "-S", "-c", SPIN, str(seconds),
                                           str(os.getpid())], stdin=subprocess.DEVNULL))
    except BaseException:
        stop_load(procs)
        raise
    return procs


def stop_load(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
    for p in procs:
        p.wait()


def run_config(cfg: dict, args: argparse.Namespace, data: str, timeout: float) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(cfg),
           "--data", data, "--parent", str(os.getpid()), "--recipe", args.recipe,
           "--steps", str(args.steps), "--repeats", str(args.repeats), "--warmup", str(args.warmup),
           "--max-seconds", str(args.max_seconds)]
    t = time.perf_counter()
    # run() kills the child on any exception here, KeyboardInterrupt included
    done = subprocess.run(cmd, env=child_env(cfg), capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"config {cfg['name']} failed:\n{done.stderr[-4000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out["process_s"] = time.perf_counter() - t
    w = out["windows"]
    out["rates"] = [x["steps"] / x["wall_s"] for x in w]
    out["steps_per_s"] = statistics.median(out["rates"])
    out["cores_busy"] = sum(x["cpu_s"] for x in w) / sum(x["wall_s"] for x in w)
    out["cut"] = any(x["steps"] < args.steps for x in w) or len(w) < args.repeats
    out["timed_steps"] = sum(x["steps"] for x in w)
    return out


def openmp_library() -> str:
    """The OpenMP runtime this process loaded (after `import torch`), with its GCC version."""
    libs = sorted({line.split()[-1] for line in open("/proc/self/maps")
                   if re.search(r"lib(g|i)?omp[^/]*\.so", line.split()[-1])}) \
        if Path("/proc/self/maps").exists() else []
    out = []
    for lib in libs:
        try:
            m = re.search(rb"running gcc ([0-9][0-9.]*)", Path(lib).read_bytes())
        except OSError:
            m = None
        out.append(lib + (f" (gcc {m.group(1).decode()})" if m else ""))
    return ", ".join(out) or "none found in /proc/self/maps"


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def recommend(results: dict, loads: list[int], names: list[str]) -> list[str]:
    lines = []
    for load in loads:
        rates = {n: results[load, n]["steps_per_s"] for n in names}
        best = max(rates, key=rates.get)
        others = sorted((n for n in names if n != best), key=rates.get, reverse=True)
        vs = f", {rates[best] / rates[others[0]]:.2f}x the next ({others[0]})" if others else ""
        lines.append(f"load {load}: fastest is {best} ({rates[best]:.2f} steps/s{vs})")
    # the default: the setting that loses least, at its worst load, against the fastest there
    worst = {n: min(results[l, n]["steps_per_s"] / max(results[l, m]["steps_per_s"] for m in names)
                    for l in loads) for n in names}
    pick = max(worst, key=worst.get)
    if pick.endswith("-passive"):
        pick += " (OMP_WAIT_POLICY=PASSIVE must be in the environment before torch is loaded)"
    detail = ", ".join(f"{n} {worst[n]:.0%}" for n in sorted(names, key=worst.get, reverse=True))
    lines.append(f"default: {pick} -- the best worst case over loads {','.join(map(str, loads))} "
                 f"(share of the fastest setting's steps/s at its worst load: {detail})")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default=str(ROOT / "recipes/quickstart.yaml"))
    ap.add_argument("--steps", type=int, default=30, help="timed steps per repeat")
    ap.add_argument("--repeats", type=int, default=3, help="timed windows; the median is shown")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps first (k-means init)")
    ap.add_argument("--loads", default="0,2,8", help="background busy processes, comma-separated")
    ap.add_argument("--configs", default=DEFAULT_CONFIGS,
                    help="thread settings, comma-separated: N, N-api, default, ...-passive")
    ap.add_argument("--max-seconds", type=float, default=10.0,
                    help="cap on one configuration's timed steps: a window past its share "
                         "(max-seconds / repeats) ends early, timing stops past max-seconds, "
                         "warm-up past half of it (after 2 steps)")
    ap.add_argument("--json", action="store_true", help="also print the results as JSON")
    ap.add_argument("--no-probe", action="store_true",
                    help="skip the check that OMP_WAIT_POLICY=PASSIVE stops idle threads spinning")
    ap.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--parent", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.steps < 1 or args.repeats < 1 or args.warmup < 1 or args.max_seconds <= 0:
        ap.error("--steps, --repeats and --warmup must be >= 1, --max-seconds > 0")
    if args.probe:
        return probe()
    if args.child:
        return child(args)
    args.recipe = str(Path(args.recipe).resolve())  # the measured processes run in the repo root
    try:
        loads = [int(v) for v in args.loads.split(",")]
        assert all(v >= 0 for v in loads)
    except (ValueError, AssertionError):
        ap.error("--loads: comma-separated counts of busy processes, e.g. 0,2,8")
    try:
        configs = [parse_config(c) for c in args.configs.split(",")]
    except argparse.ArgumentTypeError as exc:
        ap.error(str(exc))
    names = [c["name"] for c in configs]

    # SIGTERM / SIGHUP as an exception, so that the `finally` below stops the background load
    def _raise(signum, frame):
        raise SystemExit(f"bench/threads.py: signal {signum}")
    signal.signal(signal.SIGTERM, _raise)
    signal.signal(signal.SIGHUP, _raise)

    import numpy as np
    import torch

    from diffvq import recipe as recipe_mod
    from diffvq.runtime import resolve_precision, select_device

    inherited = {k: os.environ[k] for k in THREAD_ENV if k in os.environ}
    print(f"# python bench/threads.py {shlex.join(sys.argv[1:])}".rstrip())
    recipe, _ = recipe_mod.load(args.recipe)
    device = select_device(recipe.device)
    precision = resolve_precision(recipe.precision, device)
    print(f"# {cpu_model()}, {os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable), "
          f"Python {platform.python_version()}, torch {torch.__version__}, "
          f"torch.get_num_threads() default {torch.get_num_threads()}"
          + (f" (this shell sets {inherited}; the measured processes do not inherit it)"
             if inherited else ""))
    print(f"# {recipe.name}: tokenizer {recipe.tokenizer.name}, batch "
          f"{recipe.tokenizer_train.batch_size}, device {device}, precision {precision}; "
          f"{args.warmup} warm-up steps, then {args.repeats} x {args.steps} timed steps "
          f"(cap {args.max_seconds:g} s)")
    print(f"# OpenMP library: {openmp_library()}")
    for line in torch.__config__.parallel_info().strip().splitlines():
        print(f"#   {line.strip()}")
    sys.stdout.flush()
    if not args.no_probe:
        spin, calm = run_probe(False), run_probe(True)
        print(f"# OMP_WAIT_POLICY probe, before any load ({PROBE_N} x (256^2 matmul on "
              f"{spin['threads']} threads, then {PROBE_GAP_S * 1e3:g} ms asleep)): CPU s / wall s "
              f"{spin['cpu_s']:.2f} / {spin['wall_s']:.2f} unset, {calm['cpu_s']:.2f} / "
              f"{calm['wall_s']:.2f} PASSIVE: idle threads "
              + ("spin unless PASSIVE" if spin["cpu_s"] > 2 * calm["cpu_s"] + 0.05 else
                 "do not spin noticeably either way"), flush=True)

    t_all = time.perf_counter()
    dataset = recipe.data.cls(**recipe.data.params)
    modality = recipe.modality.cls(info=dataset.info(), **recipe.modality.params)
    signals, _ = dataset.load("train")
    x = modality.to_model(signals)

    # a configuration's process: startup (slow under load) + warm-up + timed windows
    timeout = 300 + 2 * args.max_seconds
    results: dict = {}
    rows = []
    head = (f"{'busy':>4} {'loadavg':>7}  {'config':12} {'threads':>7} {'steps/s':>8} "
            f"{'s/step':>8} {'cores busy':>10} {'vs 1 thread':>11} {'process s':>9}  timed steps")
    with tempfile.TemporaryDirectory(prefix="diffvq-threads-") as tmp:
        data = os.path.join(tmp, "x.npy")
        np.save(data, x.numpy())
        del x, signals
        print(head)
        for load in loads:
            procs = start_load(load, len(configs) * timeout + 60)
            try:
                if procs:
                    time.sleep(2.0)  # let them all get going before the first process starts
                for cfg in configs:
                    r = run_config(cfg, args, data, timeout)
                    r["loadavg"] = os.getloadavg()[0]
                    r["busy"] = len(procs)
                    results[load, cfg["name"]] = r
                    base = results.get((load, "1"))
                    ratio = f"{r['steps_per_s'] / base['steps_per_s']:.2f}x" if base else "-"
                    line = (f"{load:>4} {r['loadavg']:>7.2f}  {cfg['name']:12} {r['threads']:>7} "
                            f"{r['steps_per_s']:>8.2f} {1 / r['steps_per_s']:>8.3f} "
                            f"{r['cores_busy']:>10.2f} {ratio:>11} {r['process_s']:>9.1f}  "
                            f"{r['timed_steps']}"
                            f"{'*' if r['cut'] else ''}")
                    rows.append(line)
                    print(line, flush=True)
                    if any(p.poll() is not None for p in procs):
                        raise SystemExit("a background load process ended early (its deadline is "
                                         "too short); the figures at this load are not valid")
            finally:
                stop_load(procs)
    if any(r["diffvq_set_threads"] for r in results.values()):
        print("note: importing diffvq / building the trainer changed torch's thread count; the "
              "configuration's count was set again before training")
    if "1" not in names:
        print("(vs 1 thread: '-' since config 1 was not measured)")
    if any(r["cut"] for r in results.values()):
        print(f"* cut short: a window ends after {args.max_seconds / args.repeats:.1f} s "
              f"(--max-seconds / --repeats) and timing after {args.max_seconds:g} s; steps/s "
              f"counts the steps done (median of the windows)")
    print("cores busy: CPU seconds / wall seconds of the measured process in its timed steps "
          "(spinning OpenMP threads count); loadavg: 1-minute average after the configuration; "
          "process s: the configuration's whole process (startup, warm-up, timed steps)")
    for line in recommend(results, loads, names):
        print("finding, " + line)
    print(f"total {time.perf_counter() - t_all:.0f} s")
    if args.json:
        print(json.dumps({"command": f"python bench/threads.py {shlex.join(sys.argv[1:])}".rstrip(),
                          "torch": torch.__version__, "cores": os.cpu_count(),
                          "precision": precision,
                          "results": [{"load": l, "config": n, **results[l, n]}
                                      for l in loads for n in names]}))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # the background load is stopped by then (finally)
        sys.exit("bench/threads.py: interrupted")
