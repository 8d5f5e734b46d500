"""Bad input and faults from caption to release gate, against a finished run of README's main job (issue 44).

    python benchmarks/reliability_sweep.py RUN_DIR [--out sweep.md] [--json sweep.json]

Each case is a command line as a user types it, on copies made in a scratch folder (the run folder itself is
never changed). For each: the exit code, the first line of stderr, whether a Python traceback was printed, and
whether a result was silently wrong (a damaged bundle or report that still gave exit 0). A case passes when it
ends in one clean line (or works, where the input is valid) and nothing silently wrong happened. ``--code
OTHER_CHECKOUT`` runs the commands with another checkout's compresskit: the "before" column of a change.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.passes.user_generators, for a setup


@dataclass
class Case:
    name: str
    argv: list
    ok_exit: tuple = (2,)  # exit codes that are right for this input (0: it is valid and must work)
    setup: object = None  # callable(scratch) run before, returns nothing
    silent_wrong_if_exit0: bool = False  # exit 0 here means a wrong result was given silently
    env: dict = field(default_factory=dict)


CODE: dict = {}  # {"PYTHONPATH": another checkout} for the commands (not for the setups, which use this one)


def _cli(argv: list, env: dict, cwd: Path, timeout: float = 600) -> tuple[int, str, str, float]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "compresskit", *map(str, argv)], capture_output=True, cwd=cwd,
                          env={**os.environ, "COLUMNS": "300", **env, **CODE}, timeout=timeout)
    stderr = proc.stderr.decode("utf-8", "replace")
    return proc.returncode, stderr, proc.stdout.decode("utf-8", "replace"), time.perf_counter() - started


def _final(run: Path) -> Path:
    return (run / "final").resolve()


def cases(run: Path, s: Path) -> list[Case]:
    """The sweep; ``s`` is a scratch folder each setup writes into."""
    bundle = _final(run)
    ir = next((run / "artifacts").glob("05-quantize_nncf-*"))
    report = run / "report.json"

    def copy_bundle(name: str, damage):
        def setup():
            target = s / name
            shutil.copytree(bundle, target, dirs_exist_ok=True)
            damage(target)
        return setup

    def flip(path: Path):
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))

    def truncate(path: Path):
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    def user_folder(name: str, factory: str):
        def setup():  # a user generator's folder as compresskit writes it, then its factory.json edited to a program
            import torch  # noqa: PLC0415

            from compresskit.model_files import write_checksums  # noqa: PLC0415
            from compresskit.models.user import FactorySpec, write_user_generator  # noqa: PLC0415
            from tests.passes import user_generators  # noqa: PLC0415

            torch.manual_seed(0)
            folder = s / name
            folder.mkdir()
            spec = FactorySpec(factory="tests.passes.user_generators:conv_transpose", kwargs={"z_dim": 16, "width": 16},
                               z_dim=16)
            write_user_generator(folder, user_generators.conv_transpose(z_dim=16, width=16), spec)
            doc = json.loads((folder / "factory.json").read_text())
            doc["spec"] = {**doc["spec"], "factory": factory, "kwargs": {"args": ["touch", str(s / "PWNED")]}}
            (folder / "factory.json").write_text(json.dumps(doc))
            write_checksums(folder)  # a consistent folder, as a download would be
        return setup

    def write(name: str, text: str | bytes):
        def setup():
            path = s / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
        return setup

    def copy_report(name: str, change):
        def setup():
            target = s / name
            shutil.copytree(run, target, symlinks=True, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("artifacts", "baselines", "scratch", ".lock"))
            (target / "artifacts").symlink_to(run / "artifacts")
            change(target / "report.json")
        return setup

    def edit_report(path: Path):
        data = json.loads(path.read_text())
        data["verdict"] = "pass"
        path.write_text(json.dumps(data))

    recipe = ROOT / "recipes" / "edge-openvino-int8.yaml"
    return [
        # the seven
        Case("model folder whose factory.json names subprocess:call; info", ["info", s / "evil"],
             setup=user_folder("evil", "subprocess:call")),
        Case("bundle with one byte flipped in a .bin; generate", ["generate", "red apple", "--model", s / "flipped", "-o",
             s / "g1.png", "--n", "1"], setup=copy_bundle("flipped", lambda t: flip(next(t.glob("generator*.bin")))),
             silent_wrong_if_exit0=True),
        Case("bundle with a truncated .xml; generate", ["generate", "red apple", "--model", s / "trunc", "-o", s / "g2.png",
             "--n", "1"], setup=copy_bundle("trunc", lambda t: truncate(next(t.glob("generator*.xml"))))),
        Case("caption with non-UTF-8 bytes; generate", ["generate", os.fsdecode(b"red \xff\xfe apple"), "--model",
             "emoji32-v3", "-o", s / "g3.png", "--n", "1"]),
        Case("generate -o an existing folder", ["generate", "red apple", "--model", "emoji32-v3", "-o", s, "--n", "1"]),
        Case("generate -o a place that cannot be written", ["generate", "red apple", "--model", "emoji32-v3", "-o",
             "/proc/grid.png", "--n", "1"]),
        Case("run RECIPE --out an existing file", ["run", recipe, "--out", s / "a-file", "--no-bench"],
             setup=write("a-file", "keep me")),
        # what held in the sweep, kept holding
        Case("empty caption", ["generate", "", "--model", "emoji32-v3", "-o", s / "g4.png", "--n", "1"]),
        Case("--n 0", ["generate", "red apple", "--model", "emoji32-v3", "-o", s / "g5.png", "--n", "0"]),
        Case("100k-character caption", ["generate", "a" * 100_000, "--model", "emoji32-v3", "-o", s / "g6.png",
             "--n", "1"], ok_exit=(0, 2)),
        Case("control characters in a caption", ["generate", "red\x07\x1bapple", "--model", "emoji32-v3", "-o",
             s / "g7.png", "--n", "1"], ok_exit=(0, 2)),
        Case("emoji and RTL text (valid)", ["generate", "😀 שלום apple", "--model", "emoji32-v3", "-o", s / "g8.png",
             "--n", "1"], ok_exit=(0,)),
        Case("bundle without its tokenizer; generate", ["generate", "red apple", "--model", s / "notok", "-o",
             s / "g9.png", "--n", "1"], setup=copy_bundle("notok", lambda t: (t / "tokenizer.json").unlink())),
        Case("model folder without config.json; info", ["info", s / "noconf"],
             setup=write("noconf/model.safetensors", b"\0" * 64)),
        Case("--threads 0 (time)", ["time", ir, "--threads", "0"]),
        Case("recipe with a tab", ["run", s / "tab.yaml", "--out", s / "tab-run"],
             setup=write("tab.yaml", "input: {model: emoji32-v3}\nsteps:\n\t- sanitize: {}\n")),
        # gate
        Case("gate an edited report (verdict changed)", ["gate", s / "edited" / "report.json"],
             setup=copy_report("edited", edit_report), ok_exit=(1, 2), silent_wrong_if_exit0=True),
        Case("gate a truncated report", ["gate", s / "trunc-report" / "report.json"],
             setup=copy_report("trunc-report", truncate)),
        Case("gate a missing file", ["gate", s / "nope.json"]),
        Case("gate with a gates file that is garbage", ["gate", report, "--gates", s / "g.yaml"],
             setup=write("g.yaml", b"\xff\xfe\x00garbage: [")),
        # compare
        Case("compare a folder that does not exist", ["compare", s / "nope", run, "-o", s / "cmp1"]),
        Case("compare a folder without a report", ["compare", s / "empty", run, "-o", s / "cmp2"],
             setup=lambda: (s / "empty").mkdir(exist_ok=True)),
        Case("compare a run whose report.json is garbage", ["compare", s / "garbage-run", run, "-o", s / "cmp3"],
             setup=write("garbage-run/report.json", "{not json")),
        Case("compare -o an existing file", ["compare", run, run, "-o", s / "a-file2"], setup=write("a-file2", "x")),
        # bench
        Case("bench a folder that does not exist", ["bench", s / "nope"]),
        Case("bench a folder that is not a run", ["bench", s / "empty"], setup=lambda: (s / "empty").mkdir(exist_ok=True)),
        Case("bench --threads 0", ["bench", run, "--threads", "0"]),
        Case("bench --threads abc", ["bench", run, "--threads", "abc"]),
        Case("bench --candidates a step that is not there", ["bench", run, "--candidates", "nonexistent"]),
        Case("bench --split test", ["bench", run, "--split", "test"]),
        # time
        Case("time a folder that does not exist", ["time", s / "nope"]),
        Case("time a folder that is not an artifact", ["time", s / "empty"],
             setup=lambda: (s / "empty").mkdir(exist_ok=True)),
        Case("time an IR with a flipped .bin", ["time", s / "flipped-ir", "--rounds", "1"],
             setup=lambda: (shutil.copytree(ir, s / "flipped-ir", dirs_exist_ok=True), flip(s / "flipped-ir" / "model.bin")),
             silent_wrong_if_exit0=True),
        Case("time --precision int4", ["time", ir, "--precision", "int4"]),
        # eval
        Case("eval a model that does not exist", ["eval", "--model", "nope-model"]),
        Case("eval --split test", ["eval", "--model", "emoji32-v3", "--split", "test"]),
        Case("eval --data pictures", ["eval", "--model", "emoji32-v3", "--data", "pictures"]),
        Case("eval --n -5", ["eval", "--model", "emoji32-v3", "--n", "-5"]),
        Case("eval --teacher a garbage folder", ["eval", "--model", "emoji32-v3", "--teacher", s / "empty", "--n", "8"],
             setup=lambda: (s / "empty").mkdir(exist_ok=True)),
        # data
        Case("data pictures", ["data", "pictures"]),
        Case("data emoji --size 33", ["data", "emoji", "--size", "33"]),
        Case("data shapes --n -1", ["data", "shapes", "--n", "-1"]),
        Case("data emoji --styles comic", ["data", "emoji", "--styles", "comic"]),
        Case("data emoji --val-fraction 1.5", ["data", "emoji", "--val-fraction", "1.5"]),
        Case("data emoji --grid into a folder that cannot be written", ["data", "emoji", "--grid", "/proc/grid.png"]),
        # train
        Case("train a config that does not exist", ["train", s / "nope.yaml"]),
        Case("train a config with an unknown key", ["train", s / "bad.yaml", "--out", s / "t1"],
             setup=write("bad.yaml", "model: {ngf: 8}\ntraining: {stepz: 10}\n")),
        Case("train a config that is not YAML", ["train", s / "bin.yaml", "--out", s / "t2"],
             setup=write("bin.yaml", b"\x00\x01\x02\xff")),
        Case("train --out an existing file", ["train", ROOT / "recipes" / "train" / "emoji32-tiny.yaml", "--out",
             s / "a-file3"], setup=write("a-file3", "x")),
        Case("compare -o a place that cannot be written", ["compare", run, "-o", "/proc/cmp"]),
        Case("train --resume with no checkpoint", ["train", ROOT / "recipes" / "train" / "emoji32-tiny.yaml", "--out",
             s / "fresh-train", "--resume"], ok_exit=(0, 2)),
        Case("train --nproc-per-node 0", ["train", ROOT / "recipes" / "train" / "emoji32-tiny.yaml", "--nproc-per-node", "0"]),
    ]


def sweep(run: Path) -> list[dict]:
    results = []
    with tempfile.TemporaryDirectory(prefix="sweep-") as tmp:
        scratch = Path(tmp)
        for case in cases(run, scratch):
            if case.setup is not None:
                case.setup()
            code, stderr, _, seconds = _cli(case.argv, case.env, scratch)
            lines = [line for line in stderr.splitlines() if line.strip()]
            first = next((line for line in lines if line.startswith("error:")),
                         next((line for line in lines if "Error" in line and not line.startswith(" ")), lines[-1] if lines else ""))
            traceback = "Traceback (most recent call last)" in stderr
            silent = case.silent_wrong_if_exit0 and code == 0
            ran_code = (scratch / "PWNED").exists()
            # exit 2 (refused) must be one error line; exit 1 is a failed gate or run, with its table
            good = code in case.ok_exit and not traceback and not silent and not ran_code and \
                (code != 2 or len([x for x in lines if x.startswith("error:")]) == 1)
            results.append({"case": case.name, "exit": code, "first_line": first[:220], "traceback": traceback,
                            "stderr_lines": len(lines), "silent_wrong": silent, "ran_code": ran_code,
                            "ok": good, "seconds": round(seconds, 1)})
            (scratch / "PWNED").unlink(missing_ok=True)
            print(f"{'ok ' if good else 'BAD'} {code:>3} {case.name}: {first[:150]}", flush=True)
    return results


def markdown(results: list[dict]) -> str:
    rows = ["| case | exit | stderr lines | first line | verdict |", "|---|---|---|---|---|"]
    for r in results:
        why = "ok" if r["ok"] else ("**ran code**" if r["ran_code"] else "**silent wrong result**" if r["silent_wrong"]
                                     else "**traceback**" if r["traceback"] else "**not one clean line**")
        rows.append(f"| {r['case']} | {r['exit']} | {r['stderr_lines']} | `{r['first_line'][:140]}` | {why} |")
    bad = sum(not r["ok"] for r in results)
    tracebacks = sum(r["traceback"] for r in results)
    silent = sum(r["silent_wrong"] or r["ran_code"] for r in results)
    rows.append(f"\n{len(results)} cases: {bad} not clean, {tracebacks} tracebacks, {silent} silent wrong results or code run")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--code", type=Path, help="run the commands with this checkout's compresskit (the before)")
    args = parser.parse_args()
    if args.code:
        CODE["PYTHONPATH"] = str(args.code.resolve())
    results = sweep(args.run_dir.resolve())
    text = markdown(results)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
