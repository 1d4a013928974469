#!/bin/bash
# compare.sh STOCK WCPT [APPEND_TO.md]: runs the stock and wcpt builds of
# bench_w2c alternately, ROUNDS rounds per scenario, prints every round and
# the median ns per call of each with their ratio; appends a section to the
# file if given.
set -eu
stock=$1 wcpt=$2 out=${3:-}
rounds=${ROUNDS:-9}
median() { printf '%s\n' "$@" | sort -g | sed -n "$(( ($# + 1) / 2 ))p"; }
best() { printf '%s\n' "$@" | sort -g | head -1; }
rows=()
for scenario in loop dispatch; do
  s=() w=()
  for i in $(seq "$rounds"); do
    s+=("$("$stock" $scenario)"); w+=("$("$wcpt" $scenario)")
    echo "  $scenario round $i: stock ${s[-1]} ns/call, wcpt ${w[-1]} ns/call"
  done
  bs=$(best "${s[@]}") bw=$(best "${w[@]}") ms=$(median "${s[@]}") mw=$(median "${w[@]}")
  ratio=$(awk -v a="$bw" -v b="$bs" 'BEGIN { printf "%.3f", a / b }')
  mratio=$(awk -v a="$mw" -v b="$ms" 'BEGIN { printf "%.3f", a / b }')
  echo "wasm2c call_indirect $scenario: best stock $bs ns/call, wcpt $bw ns/call, wcpt/stock ${ratio}x (target <= 1.05x); medians $ms / $mw = ${mratio}x"
  rows+=("| $scenario | $bs | $bw | **${ratio}x** | $ms / $mw = ${mratio}x |")
done
if [ -n "$out" ]; then
  {
    echo
    echo "## wasm2c: call_indirect through wcpt against stock wasm2c"
    echo
    echo "WABT 1.0.32's wasm2c, the same module (integrations/wasm2c/tests/funcs.wat) and compiler"
    echo "flags, the stock runtime against the wcpt runtime (\`make bench-wasm2c\`). Each run makes"
    echo "20M calls and keeps its best of 5; the two builds alternate for $rounds rounds. The ratio"
    echo "is of the best rounds (this VM's timings of a 2 ns loop swing by 30% from run to run, with"
    echo "code placement and neighbours); the medians are shown beside it. \`loop\` calls one slot"
    echo "whose function is a single add (the"
    echo "worst case: the call sequence is all the loop does); \`dispatch\` alternates between two"
    echo "slots. Target: within 5% of stock."
    echo
    echo "| scenario | stock ns/call | wcpt ns/call | wcpt / stock | medians: stock / wcpt |"
    echo "|---|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
  } >> "$out"
fi
