#!/usr/bin/env bash
# Instructions per operation, wcpt against V8 15.2's own table code in the
# same harness (bench_v8real --count), counted by callgrind around the
# counted functions only (machine-independent: the same on any x86-64 CPU).
# Prints a Markdown section for BENCHMARKS.md. Usage: count.sh BENCH_V8REAL
set -euo pipefail
bin=${1:?usage: count.sh BENCH_V8REAL}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
count() { # scenario impl -> instructions per op
  local out=$tmp/cg.$1.$2
  local ops
  ops=$(valgrind --tool=callgrind --callgrind-out-file="$out" --toggle-collect='count_*' \
        "$bin" --count "$1" "$2" 2>/dev/null | awk '/^ops / {print $2}')
  local ir
  ir=$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  [ -n "$ops" ] && [ -n "$ir" ] || { echo "count.sh: $1/$2 failed" >&2; exit 1; }
  awk -v ir="$ir" -v ops="$ops" 'BEGIN { printf "%.1f", ir / ops }'
}
echo "## Instructions per operation against V8 15.2's own code"
echo
echo "Counted by \`benches/v8real/count.sh\` (valgrind --tool=callgrind, only inside the counted loops; the"
echo "same on any x86-64 machine), in the harness of the section above: each side's calls go through one"
echo "function pointer, wcpt through libwcpt.so (protection: ${WCPT_PROTECT:-default})."
echo
echo "| operation | wcpt | V8 15.2 | wcpt / V8 | target (wcpt) |"
echo "|---|---|---|---|---|"
for row in "pair|alloc+free pair, one thread|100" "burst|1M allocs then 1M frees, per pair|" "get|get (lookup of a live handle, through a call)|14" \
           "get_inline|lookup inline in the caller (wcpt_lookup; V8's inline GetEntrypointWithoutSignatureCheck)|14" \
           "module|module, per function (wcpt batch calls, V8 one by one)|50"; do
  IFS='|' read -r scen name target <<<"$row"
  w=$(count "$scen" wcpt)
  v=$(count "$scen" v8)
  ratio=$(awk -v w="$w" -v v="$v" 'BEGIN { printf "%.2fx", w / v }')
  if [ -z "$target" ]; then
    echo "| $name | $w | $v | $ratio | none (a time target only) |"
    continue
  fi
  verdict=$(awk -v w="$w" -v t="$target" 'BEGIN { print (w <= t) ? "met" : "MISSED" }')
  echo "| $name | $w | $v | $ratio | <= $target: $verdict |"
done
