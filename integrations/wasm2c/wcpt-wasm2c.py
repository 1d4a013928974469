#!/usr/bin/env python3
"""Put wasm2c 1.0.32's funcrefs on wcpt.

Two jobs, both strict: every rewrite below must find exactly the code it
expects, and after rewriting, no line that touches a code pointer or a
funcref may be left that this script does not recognise. Anything else
(another wasm2c version, a new construct) stops with an error naming the
line; nothing unhardened is ever passed through.

  wcpt-wasm2c.py runtime STOCK_DIR SRC_DIR OUT_DIR
      Writes a runtime to OUT_DIR: WABT's wasm-rt.h, wasm-rt-impl.h and
      wasm-rt-impl.c from STOCK_DIR (e.g. /usr/src/wasm2c), patched so that a
      funcref's `func` is a wcpt_handle, plus wasm-rt-wcpt.{h,c} from SRC_DIR.

  wcpt-wasm2c.py wasm2c WASM2C [ARGS...]
      Runs the real wasm2c at WASM2C with ARGS (which must include -o FILE.c),
      then rewrites FILE.c and FILE.h in place.
"""
import os
import re
import shutil
import subprocess
import sys


class Unrecognised(Exception):
    pass


def replace_once(text, old, new, what):
    n = text.count(old)
    if n != 1:
        raise Unrecognised(f"{what}: expected exactly one match, found {n}")
    return text.replace(old, new)


# ---------------------------------------------------------------- runtime

STOCK_FUNC_FIELD = """  /** The function. The embedder must know the actual C signature of the
   * function and cast to it before calling. */
  wasm_rt_function_ptr_t func;
"""
WCPT_FUNC_FIELD = """  /** wcpt: the handle of the code pointer table entry that holds the
   * function's address and type (see wasm-rt-wcpt.h). No code pointer is
   * stored in a funcref. */
  wcpt_handle func;
"""


def patch_runtime(stock_dir, src_dir, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(stock_dir, "wasm-rt.h")) as f:
        h = f.read()
    h = replace_once(h, "#include <string.h>\n", '#include <string.h>\n\n#include "wcpt.h"\n', "wasm-rt.h includes")
    h = replace_once(h, STOCK_FUNC_FIELD, WCPT_FUNC_FIELD, "wasm_rt_funcref_t.func")
    h = replace_once(h, "wasm_rt_funcref_null_value = {0, NULL, NULL};",
                     "wasm_rt_funcref_null_value = {0, WCPT_NULL_HANDLE, NULL};", "null funcref")
    tail = "#ifdef __cplusplus\n}\n#endif\n\n#endif /* WASM_RT_H_ */"
    h = replace_once(h, tail, '#include "wasm-rt-wcpt.h"\n\n' + tail, "wasm-rt.h end")
    with open(os.path.join(stock_dir, "wasm-rt-impl.c")) as f:
        c = f.read()
    c = replace_once(c, "void wasm_rt_init(void) {\n", "void wasm_rt_init(void) {\n  wasm_rt_wcpt_init();\n", "wasm_rt_init")
    c += '\n/* wcpt: the funcref registry. */\n#include "wasm-rt-wcpt.c"\n'
    for name, text in (("wasm-rt.h", h), ("wasm-rt-impl.c", c)):
        with open(os.path.join(out_dir, name), "w") as f:
            f.write(text)
    shutil.copy(os.path.join(stock_dir, "wasm-rt-impl.h"), out_dir)
    for name in ("wasm-rt-wcpt.h", "wasm-rt-wcpt.c"):
        shutil.copy(os.path.join(src_dir, name), out_dir)


# ---------------------------------------------------------- generated code

STOCK_CALL_INDIRECT = """#define CALL_INDIRECT(table, t, ft, x, ...)             \\
  (LIKELY((x) < table.size && table.data[x].func &&     \\
          table.data[x].func_type == func_types[ft]) || \\
       TRAP(CALL_INDIRECT),                             \\
   ((t)table.data[x].func)(__VA_ARGS__))
"""
# The Wasm table's bounds check, then wcpt's checked load (which traps on a
# null, stale or mistyped handle), then the call. The comma operator keeps
# the order: no table element is read before the bounds check.
WCPT_CALL_INDIRECT = """#define CALL_INDIRECT(table, t, ft, x, ...)                  \\
  (LIKELY((x) < table.size) || TRAP(CALL_INDIRECT),          \\
   ((t)wasm_rt_wcpt_target(table.data[x].func, func_types[ft]))(__VA_ARGS__))
"""

STOCK_ELEM_TYPE = """typedef struct {
  uint32_t func_type_index;
  wasm_rt_function_ptr_t func;
  size_t module_offset;
} wasm_elem_segment_expr_t;
"""
WCPT_ELEM_TYPE = """typedef struct {
  uint32_t func_type_index;
  wasm_rt_function_ptr_t func;
  size_t module_offset;
  bool imported; /* wcpt: an imported function gets a typed native handle */
} wasm_elem_segment_expr_t;
"""

STOCK_TABLE_INIT = """    dest->data[dest_addr + i] = (wasm_rt_funcref_t){
        func_types[src_expr->func_type_index], src_expr->func,
        (char*)module_instance + src_expr->module_offset};
"""
WCPT_TABLE_INIT = """    dest->data[dest_addr + i] =
        (src_expr->imported ? wasm_rt_wcpt_import_funcref : wasm_rt_wcpt_funcref)(
        func_types[src_expr->func_type_index], src_expr->func,
        (char*)module_instance + src_expr->module_offset);
"""

ELEM_OWN = re.compile(r"^  \{(\d+), \(wasm_rt_function_ptr_t\)&(\w+), 0\},$")
ELEM_IMPORT = re.compile(r"^  \{(\d+), \(wasm_rt_function_ptr_t\)(\w+), offsetof\((\w+), (\w+)\)\},$")
REF_FUNC = re.compile(r"\(wasm_rt_funcref_t\)\{func_types\[(\d+)\], \(wasm_rt_function_ptr_t\)(&?)(\w+), ([^{}]*?)\}")
INSTANTIATE = re.compile(r"^void (\w+)_instantiate\((\w+)\* instance(, [^)]*)?\) \{$", re.M)
FREE = re.compile(r"^void (\w+)_free\((\w+)\* instance\) \{$", re.M)
STATIC_FUNC = re.compile(r"^static [^=;(]*?\b(w2c_\w+)\(", re.M)
IMPORT_DECL = re.compile(r"^/\* import: [^\n]*\*/\n[^\n(]*?\b(\w+)\(", re.M)

# What may mention a code pointer or a funcref's `func` after rewriting.
ALLOWED = [
    re.compile(r"^  wasm_rt_function_ptr_t func;$"),
    re.compile(r"^  \{\d+, \(wasm_rt_function_ptr_t\)&\w+, 0, false\},$"),
    re.compile(r"^  \{\d+, \(wasm_rt_function_ptr_t\)\w+, offsetof\(\w+, \w+\), true\},$"),
    re.compile(r"^        func_types\[src_expr->func_type_index\], src_expr->func,$"),
    re.compile(r"^   \(\(t\)wasm_rt_wcpt_target\(table\.data\[x\]\.func, func_types\[ft\]\)\)\(__VA_ARGS__\)\)$"),
    re.compile(r"wasm_rt_wcpt_(import_)?funcref\(func_types\[\d+\], \(wasm_rt_function_ptr_t\)&?\w+, [^()]*\)"),
    re.compile(r"\.func == WCPT_NULL_HANDLE\)"),
]
SUSPECT = re.compile(r"wasm_rt_function_ptr_t|\.func\b|\(wasm_rt_funcref_t\)\s*\{|->func\b")


def rewrite_c(c, h, path):
    own = set(STATIC_FUNC.findall(c))
    imports = set(IMPORT_DECL.findall(h))
    c = replace_once(c, STOCK_CALL_INDIRECT, WCPT_CALL_INDIRECT, f"{path}: CALL_INDIRECT")
    c = replace_once(c, STOCK_ELEM_TYPE, WCPT_ELEM_TYPE, f"{path}: wasm_elem_segment_expr_t")
    c = replace_once(c, STOCK_TABLE_INIT, WCPT_TABLE_INIT, f"{path}: funcref_table_init")

    def elem_line(line):
        m = ELEM_OWN.match(line)
        if m and m.group(2) in own:
            return line[:-2] + ", false},"
        m = ELEM_IMPORT.match(line)
        if m and m.group(2) in imports:
            return line[:-2] + ", true},"
        return line

    c = "\n".join(elem_line(line) for line in c.split("\n"))

    def ref_func(m):
        type_index, amp, name, inst = m.groups()
        if amp and name in own and inst == "instance":
            return f"wasm_rt_wcpt_funcref(func_types[{type_index}], (wasm_rt_function_ptr_t)&{name}, {inst})"
        if not amp and name in imports and re.fullmatch(r"instance->\w+", inst):
            return f"wasm_rt_wcpt_import_funcref(func_types[{type_index}], (wasm_rt_function_ptr_t){name}, {inst})"
        raise Unrecognised(f"{path}: funcref of unknown function: {m.group(0)}")

    c = REF_FUNC.sub(ref_func, c)
    c = re.sub(r"\.func == NULL\)", ".func == WCPT_NULL_HANDLE)", c)
    (c, n) = INSTANTIATE.subn(lambda m: m.group(0) + "\n  wasm_rt_wcpt_instance_begin(instance, sizeof(*instance));", c)
    if n != 1:
        raise Unrecognised(f"{path}: expected one _instantiate function, found {n}")
    (c, n) = FREE.subn(lambda m: m.group(0) + "\n  wasm_rt_wcpt_instance_free(instance, sizeof(*instance));", c)
    if n != 1:
        raise Unrecognised(f"{path}: expected one _free function, found {n}")
    check_clean(c, path)
    return c


def check_clean(text, path):
    for number, line in enumerate(text.split("\n"), 1):
        if not SUSPECT.search(line):
            continue
        rest = line
        for allowed in ALLOWED:
            rest = allowed.sub("", rest)
        if SUSPECT.search(rest):
            raise Unrecognised(f"{path}:{number}: unrecognised use of a code pointer or funcref: {line.strip()}")


def run_wasm2c(real, args):
    if "-o" not in args or args.index("-o") + 1 >= len(args):
        raise Unrecognised("wasm2c must be run with -o FILE.c (stdout output is not rewritten)")
    out = args[args.index("-o") + 1]
    if not out.endswith(".c"):
        raise Unrecognised(f"-o {out}: expected a .c file")
    subprocess.run([real] + args, check=True)
    header = out[:-2] + ".h"
    try:
        with open(out) as f:
            c = f.read()
        with open(header) as f:
            h = f.read()
        check_clean(h, header)
        c = rewrite_c(c, h, out)
    except Unrecognised as e:
        # Never leave unhardened code where a build that ignores our exit
        # status would compile it.
        for path in (out, header):
            with open(path, "w") as f:
                f.write(f'#error "wcpt-wasm2c refused this output: {str(e)[:200]}"\n')
        raise
    with open(out, "w") as f:
        f.write(c)


def main(argv):
    try:
        if len(argv) == 5 and argv[1] == "runtime":
            patch_runtime(*argv[2:])
        elif len(argv) >= 3 and argv[1] == "wasm2c":
            run_wasm2c(argv[2], argv[3:])
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except Unrecognised as e:
        print(f"wcpt-wasm2c: refusing: {e}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as e:
        return e.returncode or 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
