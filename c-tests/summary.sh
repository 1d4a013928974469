#!/usr/bin/env bash
# Sums the test counts in a `make check` log (cargo's "test result:" lines and
# the C tests' "NAME: N passed, N failed, N skipped" lines) and prints the
# closing line. Exits non-zero if anything failed or a step did not finish.
log=$1
failed_steps=$2
label=${3:-check}
read -r passed failed skipped < <(awk '
  /^test result: / {
    for (i = 1; i <= NF; i++) {
      if ($(i+1) ~ /^passed;?$/) p += $i
      if ($(i+1) ~ /^failed;?$/) f += $i
      if ($(i+1) ~ /^ignored;?$/) s += $i
    }
  }
  /^test_[a-z_]+: [0-9]+ passed, [0-9]+ failed/ {
    p += $2; f += $4; s += $6
  }
  END { print p + 0, f + 0, s + 0 }' "$log")
status=0
if [ -s "$failed_steps" ]; then
  echo "Steps that failed:"
  cat "$failed_steps"
  status=1
fi
[ "$failed" -eq 0 ] || status=1
[ "$passed" -gt 0 ] || status=1
echo "$label: $passed passed, $failed failed, $skipped skipped"
exit $status
