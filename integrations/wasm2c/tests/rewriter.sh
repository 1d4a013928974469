#!/bin/bash
# The rewriting wasm2c wrapper refuses generated code it does not recognise.
# usage: rewriter.sh REWRITER REAL_WASM2C MODULE.wasm WORKDIR
# Each case feeds the wrapper a mutated copy of real wasm2c output (through a
# fake wasm2c that copies it to -o) and expects exit status 1 with
# "refusing"; the unmutated copy must pass.
set -u
rewriter=$1 real=$2 wasm=$3 work=$4
rm -rf "$work" && mkdir -p "$work"
"$real" "$wasm" -n funcs -o "$work/stock.c" || exit 1
cat > "$work/fake-wasm2c" <<FAKE
#!/bin/sh
# copies the prepared output to the -o file (the last argument)
for a; do out=\$a; done
cp "$work/src.c" "\$out" && cp "$work/src.h" "\${out%.c}.h"
FAKE
chmod +x "$work/fake-wasm2c"
passed=0 failed=0

# case NAME EXPECT(ok|refuse) C-SED H-SED [extra wrapper args]
case_() {
  local name=$1 expect=$2 csed=$3 hsed=$4
  sed -e "$csed" "$work/stock.c" > "$work/src.c"
  sed -e "$hsed" "$work/stock.h" > "$work/src.h"
  python3 "$rewriter" wasm2c "$work/fake-wasm2c" "$wasm" -n funcs -o "$work/out.c" 2> "$work/err.txt"
  local rc=$?
  if [ "$expect" = ok ] && [ $rc -eq 0 ]; then
    passed=$((passed + 1)); echo "  ok   $name"
  elif [ "$expect" = refuse ] && [ $rc -eq 1 ] && grep -q "refusing" "$work/err.txt" &&
       head -1 "$work/out.c" | grep -q '^#error' && head -1 "$work/out.h" | grep -q '^#error'; then
    passed=$((passed + 1)); echo "  ok   $name: $(head -c 150 "$work/err.txt")"
  else
    failed=$((failed + 1)); echo "  FAIL $name (exit $rc): $(cat "$work/err.txt")"
  fi
}

case_ "unmodified output is rewritten" ok '' ''
case_ "another CALL_INDIRECT" refuse 's/table.data\[x\].func \&\&     /table.data[x].func \&\& 1 \&\&/' ''
case_ "a call through a table element" refuse '$a static void leak(wasm_rt_funcref_table_t* t) { ((void (*)(void))t->data[0].func)(); }' ''
case_ "a funcref literal outside ref.func" refuse '$a static void lit(wasm_rt_funcref_t* r) { *r = (wasm_rt_funcref_t){0, (wasm_rt_function_ptr_t)\&abort, 0}; }' ''
case_ "an element of an unknown function" refuse '0,/(wasm_rt_function_ptr_t)&w2c_/s//(wasm_rt_function_ptr_t)\&w2c_unknown_/' ''
case_ "another funcref_table_init" refuse 's/src_expr->func, *$/src_expr->func, \/\* changed \*\//' ''
case_ "no _free function" refuse 's/^void Z_funcs_free(/void Z_funcs_release(/' ''
case_ "a code pointer in the header" refuse '' '$a extern wasm_rt_function_ptr_t leaked;'
sed -e '' "$work/stock.c" > "$work/src.c"; cp "$work/stock.h" "$work/src.h"
python3 "$rewriter" wasm2c "$work/fake-wasm2c" "$wasm" -n funcs 2> "$work/err.txt"
if [ $? -eq 1 ] && grep -q refusing "$work/err.txt"; then
  passed=$((passed + 1)); echo "  ok   output to stdout: $(cat "$work/err.txt")"
else
  failed=$((failed + 1)); echo "  FAIL output to stdout was not refused"
fi
echo "rewriter: $passed passed, $failed failed"
[ $failed -eq 0 ]
