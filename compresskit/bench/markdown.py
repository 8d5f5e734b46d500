"""Plain-text renderings of a report: the Markdown file, and the rows the CLI and ``compare`` print."""

from __future__ import annotations

import math

from .frontier import frontier_line

SPEED_COLUMNS = [  # (metric, header, format)
    ("latency_ms_p50", "p50 ms", "{:.2f}"), ("latency_ms_p90", "p90 ms", "{:.2f}"), ("latency_ms_p99", "p99 ms", "{:.2f}"),
    ("speedup_vs_baseline", "vs torch", "{:.2f}x"), ("speedup_vs_exported_teacher", "vs export", "{:.2f}x"),
    ("speedup_vs_teacher_int8", "vs int8", "{:.2f}x"), ("benchmark_app_ms_p50", "bench_app ms", "{:.3f}"),
    ("throughput_ips", "img/s", "{:.0f}"),
    ("e2e_latency_ms_p50", "e2e p50 ms", "{:.2f}"), ("e2e_latency_ms_p90", "e2e p90 ms", "{:.2f}"),
    ("e2e_speedup_vs_baseline", "e2e vs torch", "{:.2f}x"), ("first_inference_ms", "first ms", "{:.0f}"),
    ("peak_rss_mb", "RSS MiB", "{:.0f}"), ("size_mb", "size MiB", "{:.2f}"), ("params", "params", "{:,.0f}"),
    ("macs", "MMACs", "{:.1f}"), ("gmacs_per_s", "GMAC/s", "{:.1f}"), ("peak_gmacs_per_s", "peak GMAC/s", "{:.0f}"),
    ("share_of_peak", "of peak", "{:.1%}"),
]
QUALITY_COLUMNS = [
    ("kid", "KID", "{:.4f}"), ("fid", "FID", "{:.1f}"), ("r_precision", "R-prec", "{:.3f}"),
    ("caption_similarity", "cap sim", "{:.3f}"), ("attr_accuracy", "attr acc", "{:.3f}"),
    ("attr_accuracy_seen", "attr seen", "{:.3f}"), ("attr_accuracy_unseen", "attr unseen", "{:.3f}"),
    ("attr_accuracy_unseen_1obj", "unseen 1obj", "{:.3f}"), ("attr_accuracy_unseen_2obj", "unseen 2obj", "{:.3f}"),
    ("diversity", "diversity", "{:.4f}"), ("diversity_vs_real", "div/real", "{:.2f}"),
    ("psnr_vs_teacher", "PSNR dB", "{:.2f}"), ("ssim_vs_teacher", "SSIM", "{:.3f}"),
    ("perceptual_vs_teacher", "perc", "{:.4f}"),
]
COLUMNS = SPEED_COLUMNS + QUALITY_COLUMNS
TERMINAL_COLUMNS = [c for c in COLUMNS if c[0] in (  # what fits a terminal; report.md has every column
    "latency_ms_p50", "speedup_vs_baseline", "speedup_vs_exported_teacher", "speedup_vs_teacher_int8",
    "e2e_speedup_vs_baseline", "size_mb", "kid", "r_precision", "attr_accuracy_unseen", "diversity", "psnr_vs_teacher")]


def cell(metrics: dict, name: str, fmt: str) -> str:
    record = metrics.get(name)
    if not isinstance(record, dict) or not isinstance(record.get("value"), (int, float)):
        return "-"
    value = record["value"]
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if name == "macs":
        value = value / 1e6
    stderr = record.get("stderr")  # value ± its standard error (KID, R-precision, attribute accuracy)
    return fmt.format(value) + (f" ± {fmt.format(stderr)}" if isinstance(stderr, (int, float)) else "")


def _backend(candidate: dict) -> str:
    """The runtime, with its precision where it is not fp32 (``openvino bf16``)."""
    precision = candidate.get("precision", "f32")
    return candidate["backend"] + ("" if precision == "f32" else f" {precision}")


def table_rows(candidates: list[dict], label=lambda c: c["name"], columns=COLUMNS) -> tuple[list[str], list[list[str]]]:
    """Headers and rows for the columns any candidate has."""
    present = [(m, h, f) for m, h, f in columns if any(m in c.get("metrics", {}) for c in candidates)]
    headers = ["candidate", "backend"] + [h for _, h, _ in present]
    rows = [[label(c), _backend(c)] + [cell(c.get("metrics", {}), m, f) for m, _, f in present] for c in candidates]
    return headers, rows


def _with_stderr(value: float | None, stderr: float | None, sign: bool = False) -> str:
    if value is None:
        return "-"
    text = f"{value:+.4g}" if sign else f"{value:.4g}"
    return text + (f" ± {stderr:.2g}" if stderr is not None else "")


def gate_rows(gates: list) -> tuple[list[str], list[list[str]]]:
    """Gate table rows (from ``GateResult``s or their JSON form); ``vs baseline`` is observed - baseline with its
    standard error where one exists; a speedup's observed figure carries its 95% interval in brackets, and a
    verdict it straddles says marginal."""
    gates = [g.model_dump() if hasattr(g, "model_dump") else g for g in gates]
    headers = ["gate", "candidate", "goal", "observed", "threshold", "baseline", "vs baseline", "result"]
    rows = []
    for g in gates:
        fmt = lambda v: "-" if v is None else f"{v:.4g}"  # noqa: E731
        op = ">=" if g["direction"] == "higher" else "<="
        threads = f" @{g['threads']}t" if g.get("threads") else ""
        result = "PASS" if g["passed"] else f"FAIL ({g['reason']})" if g["reason"] else "FAIL"
        again = g.get("remeasured") or 0
        rule = "failed as not shown" if g.get("marginal") == "fail" else "decided on the central value"
        if g.get("decided") == "marginal" and g.get("marginal") == "fail" and g["reason"]:
            result += f" (after {again} re-measure(s))" if again else ""  # the reason says it straddles
        elif g.get("decided") == "marginal":
            result += (f" (marginal: the interval still straddles the threshold after {again} re-measure(s); {rule})"
                       if again else " (marginal: the interval straddles the threshold)")
        elif again:
            result += f" (clear after {again} re-measure(s))"
        observed = _with_stderr(g["observed"], g.get("observed_stderr"))
        if g.get("observed_interval"):
            low, high = g["observed_interval"]
            observed += f" [{low:.4g}, {high:.4g}]"
        rows.append([g["metric"] + threads, g["candidate"], f"{g['goal']} {g['value']:g}",
                     observed, f"{op} {fmt(g['threshold'])}",
                     fmt(g["baseline"]), _with_stderr(g.get("difference"), g.get("difference_stderr"), sign=True), result])
    return headers, rows


def md_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def machine_line(env: dict) -> str:
    """One line on the machine a report measured on: CPU, cores, threads, ISA, native bf16, OpenVINO's view."""
    isa = env.get("isa") or {}
    flags = ", ".join(f"{name.upper().replace('_', '-')} {'yes' if isa[name] else 'no'}" for name in isa)
    limits = "; ISA capped by " + ", ".join(f"{k}={v}" for k, v in env["isa_limits"].items()) if env.get("isa_limits") else ""
    return (f"Machine: {env.get('cpu')} ({env.get('cores')} cores, {env.get('threads_used') or '?'} thread(s) used); "
            f"ISA {env.get('isa_label', '?')} ({flags or 'flags unknown'}){limits}; native bf16: "
            f"{'yes' if env.get('native_bf16') else 'no'}; OpenVINO CPU capabilities: "
            f"{', '.join(env.get('openvino_capabilities') or []) or 'unknown'}.")


def executed_line(candidate: dict, threads: int) -> str | None:
    """What an OpenVINO candidate's compute layers executed in, read back from the compiled graph."""
    applied = candidate.get("runtime_settings", {}).get(str(threads), {})
    for settings in applied.values():
        if settings.get("executed_precisions"):
            counts = ", ".join(f"{n} {p}" for p, n in settings["executed_precisions"].items())
            kernels = sorted({k.split()[2] for k in settings.get("executed_kernels", {})})
            return f"- {candidate['name']}: {counts} layers (kernels: {', '.join(kernels)})"
    return None


def time_line(report: dict) -> str | None:
    """Where a run's wall time went: each step (0 s when reused from the cache) and each bench phase."""
    steps = [f"{s['name']} {s['seconds']:.0f} s{' (cached)' if s.get('cached') else ''}"
             for s in report.get("steps", []) if isinstance(s.get("seconds"), (int, float))]
    phases = [f"{name} {seconds:.0f} s" for name, seconds in (report.get("bench_phase_seconds") or {}).items()]
    if not steps and not phases:
        return None
    total = sum(s["seconds"] for s in report.get("steps", []) if isinstance(s.get("seconds"), (int, float)))
    bench = report.get("bench_seconds")
    return (f"Time: steps {total:.0f} s ({', '.join(steps) or '-'}); bench "
            f"{f'{bench:.0f} s' if isinstance(bench, (int, float)) else '-'} ({', '.join(phases) or '-'}).")


def report_markdown(report: dict) -> str:
    recipe = report.get("recipe", {})
    env = report.get("environment", {})
    lines = [f"# compresskit report: {recipe.get('name', '?')}", ""]
    if report.get("status") == "failed":
        lines += [f"**Run failed at step {report.get('failed_step')}**: {report.get('error')}", ""]
    else:
        s = report["settings"]["speed"]
        q = report["settings"]["quality"]
        lines += [
            machine_line(env), "", *([line, ""] if (line := time_line(report)) else []),
            f"Headline figures at {report['headline_threads']} thread(s). Latency: batch 1, each candidate in a worker process of its "
            f"own, deployed as for batch-1 latency (static shapes; OpenVINO: LATENCY hint); {s['warmup']} warm-up "
            f"calls, then {s['rounds']} rounds x {s['per_round']} calls, one worker busy at a time, seeded random "
            f"order each round. Throughput at batch {max(s['batch_sizes'])} (static shapes, throughput hint). "
            f"Quality: {report['quality_n']} {report['data']['name']} {q.get('split', 'eval')} captions, noise seed "
            f"{q['seed']}, one image each, from the deployed artifact's own runtime; diversity: 8 noise samples "
            f"of each of up to 100 of those captions (mean pairwise Lite0 cosine distance); ± is the standard "
            f"error.", "",
            "Baselines: `baseline` is the teacher in torch eager fp32 (speedup `vs torch`); `teacher_onnx`, "
            "`teacher_openvino` and `teacher_int8` are the teacher merely exported (fp32) and its plain NNCF INT8 "
            "export (`vs export`: over the teacher in the candidate's own runtime and precision; `vs int8`: over "
            "teacher_int8) — the gain a plain export would not give.", "",
        ]
        headers, rows = table_rows(report["candidates"])
        lines += ["## Candidates", "", md_table(headers, rows), ""]
        for threads in report["settings"]["speed"]["threads"]:
            sub = [{**c, "metrics": c["by_threads"].get(str(threads), {})} for c in report["candidates"]]
            h, r = table_rows(sub)
            lines += [f"### Speed at {threads} thread(s)", "", md_table(h, r), ""]
        front = ", ".join(report["pareto"]["front"]) or "(no candidate has both latency and KID)"
        frontier = report.get("frontier")
        lines += ["## Quality-held frontier", "", frontier_line(frontier), "",
                  *(["![frontier](frontier.png)", ""] if frontier and frontier["points"] else [])]
        lines += ["## Pareto front (latency p50 vs KID)", "", f"On the front: {front}.", "",
                  "![pareto](pareto.png)", "", "## Samples (same captions and noise in every row)", "",
                  "![samples](samples.png)", ""]
        executed = [line for c in report["candidates"] if (line := executed_line(c, report["headline_threads"]))]
        if executed:
            lines += ["## Executed precision (OpenVINO's compiled graphs, read back)", "", *executed, ""]
        for name, why in report.get("not_applicable", {}).items():
            lines.append(f"- {name}: {why}")
        lines += ["", "## Runtime settings (headline threads)", ""]
        for c in report["candidates"]:
            for scenario, applied in c.get("runtime_settings", {}).get(str(report["headline_threads"]), {}).items():
                shown = ", ".join(f"{k}={v}" for k, v in applied.items() if k not in ("library", "version"))
                lines.append(f"- {c['name']}, {scenario}: {applied.get('library')} {applied.get('version')}: {shown}")
        lines.append("")
        errors = [f"- {c['name']}: {msg}" for c in report["candidates"] for msg in c.get("errors", {}).values()]
        errors += [f"- {name}: {msg}" for name, msg in report.get("reference_errors", {}).items()]
        if errors:
            lines += ["## Errors", "", *errors, ""]
    if report.get("gates"):
        headers, rows = gate_rows(report["gates"])
        lines += ["## Gates", "", md_table(headers, rows), ""]
    lines += [f"**Verdict: {report.get('verdict', 'no gates')}**", ""]
    if report.get("nondeterminism"):
        lines += ["## Not deterministic", "", *[f"- {n}" for n in report["nondeterminism"]], ""]
    return "\n".join(lines)
