;; The module behind integrations/wasm2c/tests/test_wasm2c.c and the
;; call_indirect benchmark.
(module
  (import "host" "add1" (func $add1 (param i32) (result i32)))
  (type $i2i (func (param i32) (result i32)))
  (type $v2i (func (result i32)))
  (table $t 8 funcref)
  (func $double (type $i2i) (i32.mul (local.get 0) (i32.const 2)))
  (func $seven (type $v2i) (i32.const 7))
  (func $inc (type $i2i) (i32.add (local.get 0) (i32.const 1)))
  (elem (table $t) (i32.const 0) func $double $seven $add1 $inc)
  (elem declare func $inc)
  ;; call_indirect (type $i2i) of table slot $i with argument $x
  (func (export "call") (param $i i32) (param $x i32) (result i32)
    (call_indirect (type $i2i) (local.get $x) (local.get $i)))
  (func (export "get") (param $i i32) (result funcref)
    (table.get $t (local.get $i)))
  (func (export "set") (param $i i32) (param $f funcref)
    (table.set $t (local.get $i) (local.get $f)))
  ;; ref.func: makes a funcref at run time
  (func (export "ref_inc") (result funcref) (ref.func $inc))
  (func (export "grow") (param $n i32) (result i32)
    (table.grow $t (ref.func $inc) (local.get $n)))
  (func (export "size") (result i32) (table.size $t))
  ;; $n calls through slot 3 ($inc): the benchmark's hot loop
  (func (export "loop") (param $n i32) (result i32) (local $acc i32)
    (block $done
      (loop $next
        (br_if $done (i32.eqz (local.get $n)))
        (local.set $acc (call_indirect (type $i2i) (local.get $acc) (i32.const 3)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $next)))
    (local.get $acc))
  ;; $n calls alternating between slots 0 ($double) and 3 ($inc)
  (func (export "dispatch") (param $n i32) (result i32) (local $acc i32)
    (block $done
      (loop $next
        (br_if $done (i32.eqz (local.get $n)))
        (local.set $acc
          (call_indirect (type $i2i) (local.get $acc)
            (i32.mul (i32.and (local.get $n) (i32.const 1)) (i32.const 3))))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $next)))
    (local.get $acc))
)
