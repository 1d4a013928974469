#!/usr/bin/env python3
"""Run WABT's wasm2c spec suite (../shared/wasm2c-spec, unchanged) and compare
each test's stdout with the expected one in its description.

Every test description (test/wasm2c/spec/**/*.txt) names a .wast, extra runner
flags (`;;; ARGS*:`) and the expected stdout. This script runs WABT's own runner
(test/run-spec-wasm2c.py) once per description, with the wasm2c, runtime and
compiler given here, and prints one line per failure and a closing line
`wasm2c spec: N passed, M failed`. Exit status: 0 only if every selected test
passed.
"""
import argparse
import concurrent.futures
import os
import re
import shlex
import subprocess
import sys
import tempfile


def parse(txt_path):
    stdin_file, args, expected, in_stdout = None, [], [], False
    with open(txt_path, encoding="utf-8") as f:
        for line in f:
            if line.startswith(";;; STDIN_FILE:"):
                stdin_file = line.split(":", 1)[1].strip()
            elif line.startswith(";;; ARGS*:") or line.startswith(";;; ARGS:"):
                args += shlex.split(line.split(":", 1)[1])
            elif line.startswith("(;; STDOUT ;;;"):
                in_stdout = True
            elif line.startswith(";;; STDOUT ;;)"):
                in_stdout = False
            elif in_stdout:
                expected.append(line)
    if stdin_file is None:
        raise SystemExit(f"{txt_path}: no STDIN_FILE line")
    return stdin_file, args, "".join(expected)


def run_one(opts, txt_path):
    stdin_file, args, expected = parse(txt_path)
    name = os.path.relpath(txt_path, os.path.join(opts.spec_dir, "test", "wasm2c", "spec"))[:-len(".txt")]
    out_dir = tempfile.mkdtemp(prefix="spec-", dir=opts.out_dir)
    cmd = [sys.executable, os.path.join(opts.spec_dir, "test", "run-spec-wasm2c.py"),
           "--bindir", opts.bindir, "--wasmrt-dir", opts.wasmrt_dir, "--cc", opts.cc,
           "-o", out_dir]
    cmd += [f"--cflags={c}" for c in opts.cflags]
    cmd += args + [stdin_file]
    p = subprocess.run(cmd, cwd=opts.spec_dir, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=opts.timeout)
    ok = p.returncode == 0 and p.stdout == expected
    detail = ""
    if not ok:
        got = p.stdout.strip().splitlines()[-1:] or [""]
        err = p.stderr.strip().splitlines()[-3:]
        detail = f"exit {p.returncode}; got {got[0]!r}, expected {expected.strip().splitlines()[-1:]}"
        if err:
            detail += "\n    " + "\n    ".join(err)
    return name, ok, detail


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--spec-dir", required=True)
    ap.add_argument("--bindir", required=True)
    ap.add_argument("--wasmrt-dir", required=True)
    ap.add_argument("--cc", default="cc")
    ap.add_argument("--cflags", action="append", default=[])
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--timeout", type=int, default=600)
    ap.add_argument("--label", default="wasm2c spec")
    ap.add_argument("tests", nargs="*", help="names like call_indirect or multi-memory/load (default: all)")
    opts = ap.parse_args()
    opts.spec_dir = os.path.abspath(opts.spec_dir)
    os.makedirs(opts.out_dir, exist_ok=True)
    root = os.path.join(opts.spec_dir, "test", "wasm2c", "spec")
    txts = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f.endswith(".txt"))
    if opts.tests:
        want = set(opts.tests)
        txts = [t for t in txts if os.path.relpath(t, root)[:-4] in want]
        if len(txts) != len(want):
            raise SystemExit(f"unknown test in {sorted(want)}")
    passed, failed = 0, []
    with concurrent.futures.ThreadPoolExecutor(max_workers=opts.jobs) as ex:
        for name, ok, detail in ex.map(lambda t: run_one(opts, t), txts):
            if ok:
                passed += 1
            else:
                failed.append(name)
                print(f"FAIL {name}: {detail}", flush=True)
    print(f"{opts.label}: {passed} passed, {len(failed)} failed")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
