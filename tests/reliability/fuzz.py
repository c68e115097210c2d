#!/usr/bin/env python
"""Recipe fuzzer: whatever a user writes in a recipe, `diffvq validate` and `diffvq run` answer
with exit 0 (valid) or exit 2 and one `error: ...` message on stderr - never a traceback, never
another exit status, never a hang past the timeout, never a half-written run directory after
exit 2, and a YAML tag never executes anything.

    python tests/reliability/fuzz.py [--run] [--timeout 30] RECIPE [RECIPE ...]
    python tests/reliability/fuzz.py --list recipes/quickstart.yaml      # the mutants only
    python tests/reliability/fuzz.py --only 'n_layer' --json out.json recipes/quickstart.yaml

Mutants: the recipe resolved with every default (what `diffvq validate RECIPE` prints), with one
change each - at every key path (mappings, lists and their elements, component params, each
prior's `train:` and `sample:`) the value becomes a wrong type, a huge, negative, zero or NaN
number, null, an empty or a very long string, a YAML tag (`!!python/object/apply`, `!!binary`,
an unknown one) or an alias bomb / a self-referencing alias; `name` keys of components get an
unknown name; each mapping gets a misspelt copy of its first key and a non-string key; each key
is deleted; plus damage to the whole file (a list, a scalar, empty, binary, invalid UTF-8, deep
nesting, `base:` at itself or at /dev/zero, ...). Each mutant is a YAML *text* file (tags and
aliases need raw text); the list is the same every time for the same recipe.

Execution: one persistent worker process imports diffvq once and calls `diffvq.cli.main(argv)`
per mutant, with stdout/stderr captured and any exception escaping main() recorded (= a
traceback); the parent enforces the per-mutant timeout by killing the worker's process group and
starting a new one. The worker runs in a scratch folder (where `touch PWNED` would land), with
DIFFVQ_CACHE in that folder and an address-space cap (--memory-gb, default 10) so that an absurd
size fails fast as MemoryError instead of taking the machine down.

--run: each mutant that validates is then run (`diffvq run MUTANT --runs-dir <fresh> --quiet`)
with small-run overrides (OVERRIDES below; an override of the very key the mutant changes is left
out) for up to the timeout. A run still going at the timeout without a traceback counts as
"still running" (a pass, listed apart): a legitimately huge setting may take long. A mutant
whose resolved recipe is the same as the unmutated one's (or as an earlier mutant's) is not run
again. Failure kinds: traceback, exit-code (not 0/2, or the worker died), hang (validate past
the timeout), multi-line (exit 2 without exactly one error message), run-dir-left (exit 2 and
something left in --runs-dir though no stage finished and no checkpoint was saved: finished work
is kept by design, and listed as "kept", not a failure), code-execution (a PWNED file appeared).

Used as a library by tests/reliability/test_fuzz.py: `Fuzzer`, `mutants()`, `ci_subset()`.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import os
import random
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import yaml

HERE = Path(__file__).absolute()  # the worker is started by the path the parent was
REPO = Path(__file__).resolve().parents[2]

SLOT = "__FUZZ_SLOT__"  # placeholder value, replaced by raw YAML text after dumping
KEYSLOT = "__FUZZ_KEY__"  # placeholder key

# billion laughs: 9 levels of 9 aliases -> 9**9 (387 million) leaves when walked
_LAUGHS = ["&l0 [" + ", ".join(["lol"] * 9) + "]"] + [
    f"&l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 9)]
ALIAS_BOMB = "[" + ", ".join(_LAUGHS) + "]"
LONG = "x" * 5000

# (mutation, raw YAML text of the new value) - applied at every key path below the top
VALUE_MUTATIONS: list[tuple[str, str]] = [
    ("string", "fuzz"),
    ("float", "0.5"),
    ("list", "[1, 2]"),
    ("list-of-strings", "[fuzz, fuzz]"),
    ("empty-list", "[]"),
    ("mapping", "{fuzz: 1}"),
    ("empty-mapping", "{}"),
    ("bool", "true"),
    ("date", "2024-01-01"),
    ("int-1e9", "1000000000"),
    ("int-1e18", "1000000000000000000"),
    ("int-1e40", "1" + "0" * 40),
    ("float-1e308", "1.0e+308"),
    ("inf", ".inf"),
    ("negative-1", "-1"),
    ("negative-1e9", "-1000000000"),
    ("zero", "0"),
    ("nan", ".nan"),
    ("null", "null"),
    ("empty-string", "''"),
    ("long-string", LONG),
    ("tag-python", '!!python/object/apply:os.system ["touch PWNED"]'),
    ("tag-binary", "!!binary aGVsbG8="),
    ("tag-unknown", "!fuzztag 3"),
    ("alias-bomb", ALIAS_BOMB),
    ("alias-self-list", "&fuzzself [*fuzzself]"),
    ("alias-self-mapping", "&fuzzselfmap {fuzz: *fuzzselfmap}"),
]
STRUCTURAL = ["unknown-name", "misspelt-key", "int-key", "delete", "rename-long"]
TOP = "<file>"  # the key path of whole-file damage

# --run: keep each run small, unless the mutant changes exactly that key
OVERRIDES: list[tuple[str, str]] = [
    ("train.tokenizer.steps", "3"), ("train.prior.steps", "3"), ("sample.seeds", "1"),
    ("sample.n_per_class", "1"), ("sample.latency_samples", "1"), ("evaluate.judge", "false"),
    ("evaluate.max_reconstructions", "16"), ("evaluate.nll_max_sequences", "16")]

KINDS = ["traceback", "exit-code", "hang", "multi-line", "run-dir-left", "code-execution"]


# ---- mutants ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Mutant:
    index: int
    path: str  # `priors.gpt.train.betas[0]`, or TOP for whole-file damage
    mutation: str
    text: bytes  # `@@SELF@@` stands for the mutant's own file name

    @property
    def filename(self) -> str:
        return f"{self.index:04d}.yaml"

    def render(self) -> bytes:
        return self.text.replace(b"@@SELF@@", self.filename.encode())

    @property
    def parts(self) -> tuple[Any, ...]:
        return parse_path(self.path) if self.path != TOP else ()

    def label(self) -> str:
        return f"#{self.index} {self.path} <- {self.mutation}"


def format_path(parts: Iterable[Any]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def parse_path(path: str) -> tuple[Any, ...]:
    parts: list[Any] = []
    for m in re.finditer(r"\[(\d+)\]|([^.\[\]]+)", path):
        parts.append(int(m.group(1)) if m.group(1) is not None else m.group(2))
    return tuple(parts)


def _walk(node: Any, parts: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    yield parts, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk(v, (*parts, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, (*parts, i))


def _node(doc: Any, parts: tuple[Any, ...]) -> Any:
    for p in parts:
        doc = doc[p]
    return doc


def dump(doc: Any) -> str:
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=10**9,
                          allow_unicode=True)


def _with_value(doc: dict, parts: tuple[Any, ...], raw: str) -> str:
    d = copy.deepcopy(doc)
    _node(d, parts[:-1])[parts[-1]] = SLOT
    text = dump(d)
    assert text.count(SLOT) == 1, parts
    return text.replace(SLOT, raw)


def _misspelt(key: str) -> str:
    return key + key[-1] if key else "fuzz"


def value_mutants(doc: dict) -> list[tuple[str, str, str]]:
    """(path, mutation, text) for every key path of a resolved recipe."""
    out: list[tuple[str, str, str]] = []
    for parts, value in _walk(doc):
        path = format_path(parts)
        if parts:
            for mutation, raw in VALUE_MUTATIONS:
                out.append((path, mutation, _with_value(doc, parts, raw)))
            if parts[-1] == "name" and len(parts) >= 2:  # a component's name
                out.append((path, "unknown-name", _with_value(doc, parts, "nosuchcomponent")))
        if isinstance(value, dict):
            first = next((k for k in value if k != "name"), next(iter(value), None))
            d = copy.deepcopy(doc)
            target = _node(d, parts)
            if first is None:
                target["fuzz_key"] = 1
            else:
                target[_misspelt(str(first))] = copy.deepcopy(value[first])
            out.append((path or TOP, "misspelt-key", dump(d)))
            d = copy.deepcopy(doc)
            _node(d, parts)[1] = 1
            out.append((path or TOP, "int-key", dump(d)))
        if parts:
            d = copy.deepcopy(doc)
            parent = _node(d, parts[:-1])
            del parent[parts[-1]]
            out.append((path, "delete", dump(d)))
        if len(parts) == 2 and parts[0] == "priors":  # a prior's key: longer than a file name
            d = copy.deepcopy(doc)
            d["priors"] = {(KEYSLOT if k == parts[1] else k): v for k, v in d["priors"].items()}
            out.append((path, "rename-long", dump(d).replace(KEYSLOT, "x" * 300)))
    return out


def file_mutants(doc: dict) -> list[tuple[str, str, bytes]]:
    """(TOP, mutation, bytes): damage to the whole file."""
    text = dump(doc)
    body = text.encode()
    rng = random.Random(20240101)
    nest = 10000
    return [
        (TOP, "file-is-list", b"- name: quickstart\n- seed: 0\n"),
        (TOP, "file-is-scalar", b"42\n"),
        (TOP, "file-is-string", b"just some words\n"),
        (TOP, "file-empty", b""),
        (TOP, "file-only-comment", b"# nothing here\n"),
        (TOP, "file-binary", bytes(rng.randrange(256) for _ in range(512))),
        (TOP, "file-invalid-utf8", body.replace(b"\n", b"  # \xff\xfe\xc3\x28\n", 1)),
        (TOP, "file-utf16", text.encode("utf-16")),
        (TOP, "file-bom", b"\xef\xbb\xbf" + body),
        (TOP, "file-nul-byte", body.replace(b"\n", b"\x00\n", 1)),
        (TOP, "file-crlf", body.replace(b"\n", b"\r\n")),
        (TOP, "file-syntax-error", body + b"extra: [unclosed\n"),
        (TOP, "file-tab-indent", body + b"evaluate:\n\tnll: true\n"),
        (TOP, "file-two-documents", body + b"---\n" + body),
        (TOP, "file-duplicate-key", body + b"seed: 1\n"),
        (TOP, "file-deep-nesting", body + b"description: " + b"[" * nest + b"]" * nest + b"\n"),
        (TOP, "file-merge-key-scalar", b"<<: 3\n" + body),
        (TOP, "file-complex-key", b"? [a, b]\n: 1\n" + body),
        (TOP, "file-alias-bomb", b"fuzz: " + ALIAS_BOMB.encode() + b"\n" + body),
        (TOP, "file-python-tag", b"!!python/object/apply:os.system [\"touch PWNED\"]\n"),
        (TOP, "base-self", b"base: @@SELF@@\n" + body),
        (TOP, "base-dev-zero", b"base: /dev/zero\n" + body),
        (TOP, "base-proc-self-mem", b"base: /proc/self/mem\n" + body),
        (TOP, "base-directory", b"base: .\n" + body),
        (TOP, "base-missing", b"base: no-such-recipe.yaml\n" + body),
        (TOP, "base-not-a-string", b"base: [a, b]\n" + body),
        (TOP, "base-long-name", b"base: " + LONG.encode() + b".yaml\n" + body),
    ]


def mutants(doc: dict) -> list[Mutant]:
    """Every mutant of a resolved recipe, deterministic; identical texts appear once."""
    seen: set[bytes] = set()
    out: list[Mutant] = []
    items = [(p, m, t.encode()) for p, m, t in value_mutants(doc)] + file_mutants(doc)
    for path, mutation, text in items:
        if text in seen:
            continue
        seen.add(text)
        out.append(Mutant(len(out), path, mutation, text))
    return out


def mutation_kinds() -> list[str]:
    return [m for m, _ in VALUE_MUTATIONS] + STRUCTURAL


# representative key paths for the CI subset: each value mutation lands on two of these in turn
CI_PATHS = ["tokenizer.codebook_size", "seed", "name", "priors.gpt.n_embd", "sample.n_per_class",
            "train.tokenizer.lr", "priors.gpt.train.betas[0]", "data.name", "priors.gpt.sample",
            "evaluate.judge_steps", "priors", "train.prior", "precision", "modality.gallery_scale",
            "priors.gpt.dropout", "tokenizer.downsample", "sample.guidance", "plugins",
            "priors.gpt.train.steps", "tokenizer"]


def ci_subset(all_mutants: list[Mutant]) -> list[Mutant]:
    """A deterministic subset (~100) covering every mutation kind and all whole-file damage."""
    by_kind: dict[str, dict[str, Mutant]] = defaultdict(dict)
    for m in all_mutants:
        by_kind[m.mutation].setdefault(m.path, m)
    chosen: dict[int, Mutant] = {}
    for i, (mutation, _) in enumerate(VALUE_MUTATIONS):
        avail = by_kind[mutation]
        picks = [p for p in (CI_PATHS[(2 * i + j) % len(CI_PATHS)] for j in range(len(CI_PATHS)))
                 if p in avail][:2]
        for p in picks:
            chosen[avail[p].index] = avail[p]
    for mutation, paths in (("unknown-name", ["data.name", "priors.gpt.name"]),
                            ("misspelt-key", ["tokenizer", "priors.gpt.train", TOP]),
                            ("int-key", ["sample", "priors"]),
                            ("delete", ["name", "priors.gpt.name", "train.tokenizer.betas[1]"]),
                            ("rename-long", ["priors.gpt"])):
        for p in paths:
            if p in by_kind[mutation]:
                chosen[by_kind[mutation][p].index] = by_kind[mutation][p]
    for m in all_mutants:
        if m.path == TOP and m.mutation not in ("misspelt-key", "int-key"):
            chosen[m.index] = m
    return [chosen[i] for i in sorted(chosen)]


# ---- the worker ------------------------------------------------------------------------------

def default_memory_gb() -> float:
    """The worker's address-space cap: what the kernel says is available now plus 4 GiB for
    the imports' mappings - so an allocation diffvq's own memory check would let through still
    fits, and one past it fails as MemoryError instead of waking the OOM killer."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return round(int(line.split()[1]) / 2**20 + 4, 1)
    except OSError:
        pass
    return 0.0


def worker_main(memory_gb: float) -> None:
    """Import diffvq once; per request line {"argv": [...]}, call diffvq.cli.main and answer one
    JSON line. Answers go to a private copy of fd 1; anything else written to fd 1 goes to fd 2."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    import diffvq.cli  # noqa: F401  (the expensive imports, once)
    import diffvq.pipeline  # noqa: F401
    import diffvq.recipe  # noqa: F401
    if memory_gb > 0:
        import resource

        limit = int(memory_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    proto.write(json.dumps({"ready": True, "pid": os.getpid()}) + "\n")
    for line in sys.stdin:
        req = json.loads(line)
        out, err = io.StringIO(), io.StringIO()
        status: int | None = None
        exc: dict[str, Any] | None = None
        t0 = time.monotonic()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                status = diffvq.cli.main(req["argv"])
        except SystemExit as e:  # what `python -m diffvq` would do with it: no traceback
            status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            if isinstance(e.code, str):
                err.write(e.code + "\n")
        except BaseException as e:  # noqa: BLE001 - anything escaping main() is a traceback
            tb = traceback.extract_tb(e.__traceback__)
            ours = [f for f in tb if str(REPO) in f.filename and "/.venv/" not in f.filename
                    and "/tests/reliability/" not in f.filename]
            where = ours[-1] if ours else (tb[-1] if tb else None)
            try:
                msg = str(e)
            except BaseException:  # noqa: BLE001
                msg = "<unprintable>"
            exc = {"type": type(e).__name__, "message": msg[:2000],
                   "where": (f"{os.path.relpath(where.filename, REPO)}:{where.lineno} in "
                             f"{where.name}") if where else "",
                   "innermost": f"{tb[-1].filename}:{tb[-1].lineno} in {tb[-1].name}"
                   if tb else "",
                   "traceback": "".join(traceback.format_exception(e))[-4000:]}
            del e
        answer = {"status": status, "exception": exc, "seconds": time.monotonic() - t0,
                  "stdout": out.getvalue()[:1_000_000], "stderr": err.getvalue()[:20_000],
                  "stderr_chars": len(err.getvalue())}
        proto.write(json.dumps(answer) + "\n")


class Worker:
    """The parent's handle on a worker process; `call` returns None on a timeout (the worker is
    killed then, and started again by the next call)."""

    def __init__(self, workdir: Path, memory_gb: float | None = None,
                 startup_timeout: float = 300.0):
        self.workdir = workdir
        self.memory_gb = default_memory_gb() if memory_gb is None else memory_gb
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen | None = None
        self.log_path = workdir / "worker.log"
        self.starts = 0
        self.calls = 0
        self._buf = b""

    def start(self) -> None:
        env = dict(os.environ)
        env["DIFFVQ_CACHE"] = str(self.workdir / "cache")
        env["TMPDIR"] = str(self.workdir / "tmp")  # diffvq's crash reports land here
        env.setdefault("OMP_NUM_THREADS", "1")
        env.pop("DIFFVQ_DEBUG", None)
        env["PYTHONUNBUFFERED"] = "1"
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE), "--worker", "--memory-gb", str(self.memory_gb)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, cwd=self.workdir,
            env=env, start_new_session=True)
        log.close()
        self.starts += 1
        self.calls = 0
        self._buf = b""
        ready = self._readline(time.monotonic() + self.startup_timeout)
        if ready is None or not json.loads(ready).get("ready"):
            tail = self.log_tail()
            self.kill()
            raise RuntimeError(f"fuzz worker did not start:\n{tail}")

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_bytes()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def _readline(self, deadline: float) -> bytes | None:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(fd, 1 << 20)
                if not chunk:  # the worker died
                    return b""
                self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def call(self, argv: list[str], timeout: float) -> dict[str, Any] | None:
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        assert self.proc is not None and self.proc.stdin is not None
        log_size = self.log_path.stat().st_size
        self.calls += 1
        try:
            self.proc.stdin.write((json.dumps({"argv": argv}) + "\n").encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        line = self._readline(time.monotonic() + timeout)
        if line is None:
            self.kill()
            return None
        if line == b"":  # died: a signal, or os._exit
            code = self.proc.wait()
            stray = self.log_path.read_bytes()[log_size:][-3000:].decode(errors="replace")
            self.proc = None
            return {"status": code, "exception": None, "died": True, "stdout": "",
                    "stderr": stray, "stderr_chars": len(stray), "seconds": None}
        return json.loads(line)

    def kill(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(Exception):
                f.close()  # type: ignore[union-attr]
        self.proc = None

    def close(self) -> None:
        self.kill()


# ---- judging one answer ----------------------------------------------------------------------

def one_error_message(stderr: str) -> str | None:
    """None when stderr holds exactly one `error: ...` message (a RecipeError header `...: N
    problems` followed by N `  - ...` lines counts as one) after nothing but `diffvq: ` log
    lines; otherwise what is wrong."""
    lines = stderr.rstrip("\n").split("\n") if stderr.strip() else []
    idx = next((i for i, l in enumerate(lines) if l.startswith("error: ")), None)
    if idx is None:
        return "no 'error: ' line on stderr"
    stray = [l for l in lines[:idx] if not l.startswith("diffvq: ")]
    if stray:
        return f"stray stderr before the error: {stray[0][:200]!r}"
    after = lines[idx + 1:]
    m = re.search(r": (\d+) problems$", lines[idx])
    if m:
        n = int(m.group(1))
        if len(after) != n or not all(l.startswith("  - ") for l in after):
            return f"header says {n} problems, then {len(after)} line(s): " \
                   f"{(after[:1] or [''])[0][:200]!r}"
        return None
    if after:
        return f"{len(after)} more line(s) after the error: {after[0][:200]!r}"
    return None


def last_line(text: str) -> str:
    lines = [l for l in text.strip().splitlines() if l.strip()]
    return lines[-1][:300] if lines else ""


def error_summary(stderr: str) -> str:
    """The error line (and first problem of a multi-problem error), shortened."""
    lines = stderr.strip().splitlines()
    idx = next((i for i, l in enumerate(lines) if l.startswith("error: ")), None)
    if idx is None:
        return last_line(stderr)
    s = lines[idx]
    if re.search(r": \d+ problems$", s) and idx + 1 < len(lines):
        s += " " + lines[idx + 1].strip()
    return s[:300]


def _crash_location(internal: str) -> str:
    """The innermost frame in this repository of a traceback diffvq saved (`traceback in F`)."""
    m = re.search(r"traceback in (\S+?);", internal)
    if not m:
        return ""
    try:
        text = Path(m.group(1)).read_text(errors="replace")
    except OSError:
        return ""
    frames = re.findall(r'File "([^"]+)", line (\d+), in (\S+)', text)
    ours = [f for f in frames if str(REPO) in f[0] and "/.venv/" not in f[0]
            and "/tests/reliability/" not in f[0]]
    f = (ours or frames or [None])[-1]
    return f"{os.path.relpath(f[0], REPO)}:{f[1]} in {f[2]}" if f else ""


@dataclass
class Outcome:
    index: int
    path: str
    mutation: str
    validate: int | None = None  # exit status of `validate`; None: hang or traceback
    run: int | None = None  # exit status of `run` (--run mode, mutants that validated)
    result: str = ""  # exit-0 | exit-2 | still-running | same-as-earlier | a failure kind
    failures: list[dict[str, str]] = field(default_factory=list)  # kind, phase, detail
    notices: list[dict[str, str]] = field(default_factory=list)  # run-dir-kept: not a failure
    seconds: float = 0.0
    note: str = ""


def judge(answer: dict[str, Any] | None, phase: str, timeout: float,
          still_running_ok: bool) -> tuple[str, list[dict[str, str]]]:
    """(result, failures) for one worker answer."""
    if answer is None:
        if still_running_ok:
            return "still-running", []
        return "hang", [{"kind": "hang", "phase": phase,
                         "detail": f"no answer after {timeout:g} s"}]
    exc = answer.get("exception")
    if exc:
        detail = f"{exc['type']}: {last_line(exc['message']) or '(no message)'}"
        if exc.get("where"):
            detail += f"  [at {exc['where']}]"
        return "traceback", [{"kind": "traceback", "phase": phase, "detail": detail}]
    status = answer["status"]
    if answer.get("died"):
        return "exit-code", [{"kind": "exit-code", "phase": phase,
                              "detail": f"worker died with status {status}: "
                                        f"{last_line(answer['stderr'])}"}]
    if status == 0:
        return "exit-0", []
    internal = next((l for l in answer["stderr"].splitlines() if l.startswith("internal error:")),
                    None)
    if status == 1 and internal:  # main() caught a bug: a traceback saved to a file
        detail = f"exit 1, {re.sub(r' [(]traceback in .*$', '', internal)[:300]}"
        where = _crash_location(internal)
        if where:
            detail += f"  [at {where}]"
        return "traceback", [{"kind": "traceback", "phase": phase, "detail": detail}]
    if status != 2:
        return "exit-code", [{"kind": "exit-code", "phase": phase,
                              "detail": f"exit {status}: {last_line(answer['stderr'])}"}]
    wrong = one_error_message(answer["stderr"])
    if wrong:
        return "multi-line", [{"kind": "multi-line", "phase": phase,
                               "detail": f"{wrong} | {error_summary(answer['stderr'])}"}]
    return "exit-2", []


# ---- the fuzzer -------------------------------------------------------------------------------

@dataclass
class Report:
    recipe: str
    mode: str
    outcomes: list[Outcome]
    seconds: float
    worker_starts: int
    base: Outcome | None = None  # --run: the unmutated recipe, run first

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in ([self.base] if self.base else []) + self.outcomes if o.failures]

    def counts(self) -> dict[str, Any]:
        kinds = Counter(f["kind"] for o in self.outcomes for f in o.failures)
        return {"mutants": len(self.outcomes),
                "exit 0": sum(o.validate == 0 for o in self.outcomes),
                "exit 2": sum(o.validate == 2 and not o.failures for o in self.outcomes)
                if self.mode == "validate" else
                sum((o.validate == 2 or o.run == 2) and not o.failures for o in self.outcomes),
                "failing mutants": len(self.failures),
                **{k: kinds.get(k, 0) for k in KINDS},
                **({"run exit 0": sum(o.run == 0 for o in self.outcomes),
                    "still running": sum(o.result == "still-running" for o in self.outcomes),
                    "run dir kept": sum(bool(o.notices) for o in self.outcomes),
                    "not re-run (same resolved recipe)":
                        sum(o.result == "same-as-earlier" for o in self.outcomes)}
                   if self.mode == "run" else {})}

    def format(self, verbose: bool = True) -> str:
        c = self.counts()
        kinds = ", ".join(f"{k} {c[k]}" for k in KINDS)
        lines = [f"== {self.recipe} [{self.mode}]: {c['mutants']} mutants in {self.seconds:.0f} s "
                 f"(worker started {self.worker_starts}x)",
                 f"   validate exit 0: {c['exit 0']}, exit 2 (clean): {c['exit 2']}, "
                 f"failing mutants: {c['failing mutants']} ({kinds})"]
        if self.mode == "run":
            lines.append(f"   run exit 0: {c['run exit 0']}, still running at the timeout: "
                         f"{c['still running']}, run dir kept after exit 2 with finished "
                         f"work (resumable; not a failure): {c['run dir kept']}, not re-run (same resolved recipe as one run "
                         f"already): {c['not re-run (same resolved recipe)']}")
        if self.base is not None:
            lines.append(f"   unmutated recipe: validate exit {self.base.validate}, run exit "
                         f"{self.base.run} ({self.base.result}, {self.base.seconds:.0f} s)")
        if verbose:
            for o in self.failures:
                for f in o.failures:
                    lines.append(f"   FAIL {f['kind']:<14} [{f['phase']}] #{o.index} {o.path} <- "
                                 f"{o.mutation}: {f['detail']}")
            for o in self.outcomes:
                if o.result == "still-running":
                    lines.append(f"   still running: #{o.index} {o.path} <- {o.mutation}")
            for o in self.outcomes:
                for f in o.notices:
                    lines.append(f"   kept: #{o.index} {o.path} <- {o.mutation}: {f['detail']}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {"recipe": self.recipe, "mode": self.mode, "seconds": self.seconds,
                "counts": self.counts(),
                "base": asdict(self.base) if self.base else None, "outcomes": [asdict(o) for o in self.outcomes]}


def _normalise(detail: str) -> str:
    detail = re.sub(r"x{20,}", "x...", detail)
    detail = re.sub(r"/tmp/[^\s'\":]+", "<tmp>", detail)
    return re.sub(r"\d{4,}", "N", detail)[:160]


def causes(reports: list[Report]) -> str:
    """Failures grouped by (kind, phase, error with numbers and temp paths blurred)."""
    groups: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for r in reports:
        for o in r.failures:
            for f in o.failures:
                groups[(f["kind"], f["phase"], _normalise(f["detail"]))].append(
                    f"{Path(r.recipe).name}:{o.path}<-{o.mutation}")
    lines = [f"== failures by cause: {len(groups)} group(s)"]
    for (kind, phase, detail), where in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], -len(kv[1]))):
        lines.append(f"-- {kind} [{phase}] x{len(where)}: {detail}")
        lines.append("     " + ", ".join(where))
    return "\n".join(lines)


class Fuzzer:
    """Owns a scratch folder and a worker; `fuzz(recipe)` returns a Report."""

    def __init__(self, timeout: float = 30.0, run: bool = False, memory_gb: float | None = None,
                 workdir: Path | None = None, progress: bool = False, recycle_runs: int = 40):
        self.timeout = timeout
        self.run_mode = run
        self.progress = progress
        self.recycle_runs = recycle_runs
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="diffvq-fuzz-")) if workdir is None else workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "cache").mkdir(exist_ok=True)
        (self.workdir / "tmp").mkdir(exist_ok=True)
        self.worker = Worker(self.workdir, memory_gb)

    def __enter__(self) -> Fuzzer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.worker.close()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def resolve(self, recipe: str | Path) -> dict[str, Any]:
        """The recipe with every default filled in, as `diffvq validate` prints it."""
        answer = self.worker.call(["validate", str(Path(recipe).resolve())], max(self.timeout, 60))
        if answer is None or answer.get("exception") or answer["status"] != 0:
            raise RuntimeError(f"{recipe} does not validate: {answer}")
        return yaml.safe_load(answer["stdout"])

    def _overrides(self, m_parts: tuple[Any, ...], resolved: dict[str, Any]) -> list[str]:
        keys = list(OVERRIDES) + [(f"priors.{k}.train.steps", "3")
                                  for k in (resolved.get("priors") or {})]
        mutated = format_path(m_parts)
        return [f"{k}={v}" for k, v in keys if k != mutated]

    def fuzz(self, recipe: str | Path, selection: list[Mutant] | None = None,
             only: str | None = None, log: Path | None = None, resume: bool = False) -> Report:
        """`log`: a file each outcome is appended to as a JSON line, as soon as it is known;
        `resume`: take the outcomes already in `log` instead of trying those mutants again."""
        t0 = time.monotonic()
        starts0 = self.worker.starts
        doc = self.resolve(recipe)
        todo = selection if selection is not None else mutants(doc)
        if only:
            todo = [m for m in todo if re.search(only, f"{m.path} <- {m.mutation}")]
        mdir = self.workdir / "mutants" / re.sub(r"\W+", "-", str(recipe)).strip("-")
        mdir.mkdir(parents=True, exist_ok=True)
        outcomes: list[Outcome] = []
        seen_runs: dict[str, Outcome] = {}
        base: Outcome | None = None
        if self.run_mode:  # the unmutated recipe first: the instrument must run it cleanly
            unmutated = Mutant(-1, "<unmutated>", "none", dump(doc).encode())
            mdir.joinpath("unmutated.yaml").write_bytes(unmutated.render())
            base = self._one(unmutated, mdir / "unmutated.yaml", seen_runs)
        done: dict[int, Outcome] = {}
        if resume and log is not None and log.exists():
            for line in log.read_text().splitlines():
                d = json.loads(line)
                if d.pop("recipe") == str(recipe):
                    done[d["index"]] = Outcome(**d)
        for n, m in enumerate(todo):
            if m.index in done:
                outcomes.append(done[m.index])
                continue
            path = mdir / m.filename
            path.write_bytes(m.render())
            o = self._one(m, path, seen_runs)
            outcomes.append(o)
            if log is not None:
                with open(log, "a") as f:
                    f.write(json.dumps({"recipe": str(recipe), **asdict(o)}) + "\n")
            if self.progress:
                for f in o.failures:
                    print(f"   FAIL {f['kind']} [{f['phase']}] #{o.index} {o.path} <- "
                          f"{o.mutation}: {f['detail'][:200]}", file=sys.stderr, flush=True)
            if self.progress and (n + 1) % 100 == 0:
                fails = sum(bool(o.failures) for o in outcomes)
                print(f"   ... {recipe}: {n + 1}/{len(todo)} mutants, {fails} failing, "
                      f"{time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
        return Report(str(recipe), "run" if self.run_mode else "validate", outcomes,
                      time.monotonic() - t0, self.worker.starts - starts0, base)

    def _pwned(self) -> bool:
        p = self.workdir / "PWNED"
        if p.exists():
            p.unlink()
            return True
        return False

    def _one(self, m: Mutant, path: Path, seen_runs: dict[str, Outcome]) -> Outcome:
        t0 = time.monotonic()
        o = Outcome(m.index, m.path, m.mutation)
        answer = self.worker.call(["validate", str(path)], self.timeout)
        o.result, o.failures = judge(answer, "validate", self.timeout, still_running_ok=False)
        if answer is not None and not answer.get("exception") and not answer.get("died"):
            o.validate = answer["status"]
        if any(re.search(r"MemoryError|RecursionError", f["detail"]) for f in o.failures):
            self.worker.kill()  # start clean
        if self._pwned():
            o.failures.append({"kind": "code-execution", "phase": "validate",
                               "detail": "a PWNED file appeared in the worker's folder"})
        if self.run_mode and o.validate == 0 and not o.failures:
            resolved_text = answer["stdout"]  # type: ignore[index]
            resolved = yaml.safe_load(resolved_text)
            overrides = self._overrides(m.parts, resolved)
            key = resolved_text + "\n".join(overrides)
            if key in seen_runs:
                prev = seen_runs[key]
                o.run, o.result = prev.run, "same-as-earlier"
                o.note = f"same resolved recipe as #{prev.index}"
                o.failures = [dict(f, detail=f"(as #{prev.index}) {f['detail']}")
                              for f in prev.failures]
                o.notices = list(prev.notices)
            else:
                seen_runs[key] = o
                self._run(m, path, overrides, o)
        o.seconds = time.monotonic() - t0
        return o

    def _run(self, m: Mutant, path: Path, overrides: list[str], o: Outcome) -> None:
        runs = self.workdir / "runs" / f"{m.index:04d}"
        shutil.rmtree(runs, ignore_errors=True)
        runs.mkdir(parents=True)
        if self.worker.calls >= self.recycle_runs:
            self.worker.kill()  # a fresh process now and then: no state carried along
        answer = self.worker.call(["run", str(path), "--runs-dir", str(runs), "--quiet",
                                   *overrides], self.timeout)
        o.result, fails = judge(answer, "run", self.timeout, still_running_ok=True)
        o.failures.extend(fails)
        if answer is not None and not answer.get("exception") and not answer.get("died"):
            o.run = answer["status"]
        if answer is not None and (answer.get("exception") or answer.get("died")):
            self.worker.kill()
        if self._pwned():
            o.failures.append({"kind": "code-execution", "phase": "run",
                               "detail": "a PWNED file appeared in the worker's folder"})
        if o.run == 2:
            left = sorted(str(p.relative_to(runs)) for p in runs.rglob("*"))
            stages = [p.stem for p in runs.glob("*/stages/*.json")]
            checkpoints = list(runs.rglob("checkpoint*/trainer.json"))
            if left:  # finished work is kept, by design: then a notice, not a failure
                half = not stages and not checkpoints
                detail = (f"left {len(left)} path(s) ({', '.join(left[:3])}"
                          f"{' ...' if len(left) > 3 else ''}; finished stages: "
                          f"{', '.join(stages) or 'none'}) | "
                          f"{error_summary(answer['stderr'])}")  # type: ignore[index]
                (o.failures if half else o.notices).append(
                    {"kind": "run-dir-left" if half else "run-dir-kept", "phase": "run",
                     "detail": detail})
        shutil.rmtree(runs, ignore_errors=True)


# ---- the command -----------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recipes", nargs="*", metavar="RECIPE")
    ap.add_argument("--run", action="store_true", help="also run the mutants that validate")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds per mutant and command")
    ap.add_argument("--memory-gb", type=float, default=None,
                    help="address-space cap of the worker in GiB (0: none; default: "
                         "MemAvailable + 4)")
    ap.add_argument("--only", metavar="REGEX", help="only mutants whose 'path <- mutation' matches")
    ap.add_argument("--subset", action="store_true", help="only the CI subset (test_fuzz.py)")
    ap.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    ap.add_argument("--json", metavar="FILE", help="write every outcome as JSON (and, as they "
                                                   "come, as JSON lines to FILE.partial)")
    ap.add_argument("--resume", action="store_true",
                    help="take the outcomes already in FILE.partial (--json) as done")
    ap.add_argument("--keep", metavar="DIR", help="scratch folder to use and keep (mutant files)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker_main(args.memory_gb or 0.0)
        return 0
    if not args.recipes:
        ap.error("give one or more recipes")
    reports: list[Report] = []
    with Fuzzer(args.timeout, args.run, args.memory_gb,
                Path(args.keep).resolve() if args.keep else None, progress=True) as fz:
        for recipe in args.recipes:
            if args.list:
                ms = mutants(fz.resolve(recipe))
                ms = ci_subset(ms) if args.subset else ms
                for m in ms:
                    if not args.only or re.search(args.only, f"{m.path} <- {m.mutation}"):
                        print(f"{recipe}\t{m.index}\t{m.path}\t{m.mutation}")
                continue
            selection = ci_subset(mutants(fz.resolve(recipe))) if args.subset else None
            report = fz.fuzz(recipe, selection, args.only,
                             Path(args.json + ".partial") if args.json else None, args.resume)
            reports.append(report)
            print(report.format(), flush=True)
    if reports:
        print(causes(reports))
        for r in reports:
            c = r.counts()
            print(f"{r.recipe} [{r.mode}]: {c['mutants']} mutants, {c['failing mutants']} failing, "
                  f"{r.seconds:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps([r.to_json() for r in reports], indent=1))
    return 1 if any(r.failures for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
