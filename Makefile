# wcpt: build, test, demo and benchmarks.
#
#   make demo    build and run the mini JIT (examples/minijit.c)
#   make check   header check, Rust tests, loom models, C tests (.so and .a)
#   make check-pkeys  the protection tests in a QEMU guest with emulated PKU
#   make loom    the loom models with a deeper preemption bound
#   make sanitize  the C tests under ASan+UBSan (.so and .a) and valgrind memcheck
#   make fuzz    differential fuzzing with cargo-fuzz (nightly), FUZZ_SECONDS=120
#   make soak    a bounded soak run on all cores, SOAK_SECONDS=120
#   make bench   wcpt against a V8 model, sharded-slab and the floor; writes BENCHMARKS.md
#   make check-wasm2c  WABT's wasm2c spec suite on wcpt (integrations/wasm2c; needs wabt)
#   make bench-wasm2c  call_indirect through wcpt against stock wasm2c
#   make bench-v8real  wcpt against V8 15.2's own table code (fetched with cargo)
#   make bench-count   instructions per operation, wcpt and V8's code (callgrind)
#   make check-cpp     the C++ API's tests and the asmjit engine's (installs libasmjit-dev)
#   make check-aarch64 the Rust and C tests and the demo for arm64, under QEMU (installs the arm64 route)
#   make bench-asmjit  the asmjit engine's checked call against a raw pointer call
#   make header  regenerate include/wcpt.h with the cbindgen command line
#   make install PREFIX=/usr/local DESTDIR=    (and make uninstall)
#   make clean

SHELL       := /bin/bash
CARGO       ?= cargo
CC          ?= cc
BUILD       := build
# Where cargo puts the libraries (not an install directory: those are the
# GNU-style prefix/libdir/includedir below).
OUT         := target/release
SO          := $(OUT)/libwcpt.so
A           := $(OUT)/libwcpt.a
# What rustc reports as the staticlib's native dependencies, kept here so
# that tests and examples link without a second build; `make install`
# computes the list from rustc, and install-check fails if the two differ.
STATIC_LIBS := -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc
CWARN       := -Wall -Wextra -pedantic -Werror
CFLAGS      ?= -O2 -g
CFLAGS_ALL  := -std=c11 -D_GNU_SOURCE $(CWARN) $(CFLAGS) -Iinclude -Ic-tests -pthread
C_TESTS     := test_api test_call test_bad_input test_threads test_lifecycle test_sweep_rss test_fork test_limits test_protect test_oom test_oom_recovery test_config test_alias
LOG         := $(BUILD)/check.log
LOOM_PREEMPTIONS ?= 2
RUST_SRC    := $(wildcard src/*.rs src/*/*.rs) build.rs cbindgen.toml Cargo.toml
VERSION     := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
MAJOR       := $(word 1,$(subst ., ,$(VERSION)))
MINOR       := $(word 2,$(subst ., ,$(VERSION)))
# The SONAME's version: MAJOR, or 0.MINOR while the major version is 0.
SOVER       := $(if $(filter 0,$(MAJOR)),0.$(MINOR),$(MAJOR))
# Install directories, GNU style: prefix (or PREFIX), libdir (or LIBDIR),
# includedir (or INCLUDEDIR), and DESTDIR for staging.
prefix      ?= /usr/local
PREFIX      ?= $(prefix)
libdir      ?= $(PREFIX)/lib
LIBDIR      ?= $(libdir)
includedir  ?= $(PREFIX)/include
INCLUDEDIR  ?= $(includedir)
DESTDIR     ?=
INSTALLED   := $(LIBDIR)/libwcpt.so.$(VERSION) $(LIBDIR)/libwcpt.so.$(SOVER) $(LIBDIR)/libwcpt.so \
               $(LIBDIR)/libwcpt.a $(INCLUDEDIR)/wcpt.h $(INCLUDEDIR)/wcpt.hpp $(LIBDIR)/pkgconfig/wcpt.pc $(LIBDIR)/pkgconfig/wcpt-static.pc \
               $(LIBDIR)/cmake/wcpt/wcptConfig.cmake $(LIBDIR)/cmake/wcpt/wcptConfigVersion.cmake

.PHONY: all lib header check check-pkeys check-wasm2c c-tests demo loom sanitize fuzz soak install uninstall install-check bench bench-wasm2c bench-v8real bench-count check-cpp bench-asmjit check-aarch64 clean

all: lib

lib: $(SO) $(A) $(OUT)/libwcpt.so.$(SOVER)

# Programs linked against the .so need it under its SONAME.
$(OUT)/libwcpt.so.$(SOVER): $(SO)
	ln -sf libwcpt.so $@

# The C libraries: rustc builds the archive, and reports its system
# libraries (for Libs.private and the CMake static target) in the same run;
# then the shared library is linked from the archive with our own version
# script, so that it exports exactly wcpt_*, each as wcpt_x@@WCPT_<SOVER>.
# (rustc gives a cdylib a version script of its own, and ld honours only
# the first, so a cdylib cannot carry symbol versions.) The list of system
# libraries is a note rustc prints, which cargo replays when nothing changed.
# -z nodelete: dlclose never unmaps the library, because threads that used
# it run its thread-slot destructor when they exit (src/thread_slot.rs).
$(SO) $(A) $(BUILD)/native-static-libs.txt &: $(RUST_SRC)
	@mkdir -p $(BUILD)
	$(CARGO) rustc --release --lib --features capi --crate-type staticlib \
	  -- --print native-static-libs 2> $(BUILD)/rustc.log || { cat $(BUILD)/rustc.log; exit 1; }
	@grep -v -i "native-static-libs\|native artifacts\|^note: *$$\|^ *$$" $(BUILD)/rustc.log >&2 || true
	@sed -n 's/.*native-static-libs: //p' $(BUILD)/rustc.log | tail -1 > $(BUILD)/native-static-libs.txt
	@test -s $(BUILD)/native-static-libs.txt || { echo "rustc did not report the static libraries"; exit 1; }
	@printf 'WCPT_%s {\n  global:\n    wcpt_*;\n  local:\n    *;\n};\n' $(SOVER) > $(BUILD)/wcpt.map
	$(CC) -shared -o $(SO) -Wl,--whole-archive $(A) -Wl,--no-whole-archive \
	  -Wl,--version-script=$(BUILD)/wcpt.map -Wl,-soname,libwcpt.so.$(SOVER) -Wl,--gc-sections -Wl,-z,relro,-z,now,-z,nodelete \
	  $$(cat $(BUILD)/native-static-libs.txt)
	@touch $(A) $(BUILD)/native-static-libs.txt

# The header comes from the cbindgen command line, built once into
# build/tools (crates.io), so that no Rust dependent ever builds cbindgen.
CBINDGEN_VERSION := 0.29.4
CBINDGEN    := $(BUILD)/tools/bin/cbindgen

$(CBINDGEN):
	$(CARGO) install cbindgen --version =$(CBINDGEN_VERSION) --locked --root $(BUILD)/tools

header: $(CBINDGEN)
	$(CBINDGEN) --quiet --config cbindgen.toml --output include/wcpt.h src/ffi.rs

$(BUILD)/shared/%: c-tests/%.c $(wildcard c-tests/*.h) include/wcpt.h $(SO) $(OUT)/libwcpt.so.$(SOVER)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $< -o $@ -L$(OUT) -Wl,-rpath,'$$ORIGIN/../../$(OUT)' -lwcpt

$(BUILD)/static/%: c-tests/%.c $(wildcard c-tests/*.h) include/wcpt.h $(A)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $< -o $@ $(A) $(STATIC_LIBS)

$(BUILD)/shared/test_dlopen: c-tests/test_dlopen.c c-tests/check.h include/wcpt.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $< -o $@ -ldl

c-tests: $(foreach t,$(C_TESTS),$(BUILD)/shared/$(t) $(BUILD)/static/$(t)) $(BUILD)/shared/test_dlopen

# Runs a command, appends its output to the log, and remembers a failure
# without stopping, so that the summary counts everything.
# (Inside $(call run,...) write commas as $(comma).)
comma := ,
run = { $(1); } 2>&1 | tee -a $(LOG); [ $${PIPESTATUS[0]} -eq 0 ] || echo "FAILED: $(1)" >> $(BUILD)/failed

check:
	@mkdir -p $(BUILD); : > $(LOG); rm -f $(BUILD)/failed
	@echo "== header: include/wcpt.h must be what cbindgen generates"
	@$(MAKE) --no-print-directory $(CBINDGEN) > /dev/null
	$(CBINDGEN) --quiet --config cbindgen.toml --output $(BUILD)/wcpt.h src/ffi.rs
	@cmp -s include/wcpt.h $(BUILD)/wcpt.h || { diff -u include/wcpt.h $(BUILD)/wcpt.h | head -40; \
	  echo "include/wcpt.h differs from what cbindgen generates: run make header and commit it"; exit 1; }
	@$(MAKE) --no-print-directory c-tests
	@echo "== cargo doc and clippy: no warnings"
	@$(call run,RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps -q --features capi && echo "test_rustdoc: 1 passed$(comma) 0 failed$(comma) 0 skipped")
	@$(call run,$(CARGO) clippy --release --all-targets -q --features capi -- -D warnings && echo "test_clippy: 1 passed$(comma) 0 failed$(comma) 0 skipped")
	@echo "== Rust tests (release, then debug with debug assertions)"
	@$(call run,$(CARGO) test --release --features capi)
	@$(call run,$(CARGO) test --features capi)
	@echo "== a Rust program that depends on the crate, without the C ABI"
	@$(call run,c-tests/consumers/rust-dep/run.sh $(BUILD)/rust-dep)
	@echo "== loom models (LOOM_MAX_PREEMPTIONS=$(LOOM_PREEMPTIONS))"
	@$(call run,LOOM_MAX_PREEMPTIONS=$(LOOM_PREEMPTIONS) RUSTFLAGS="--cfg loom" $(CARGO) test --release --lib --target-dir target/loom)
	@echo "== C tests against libwcpt.so and libwcpt.a"
	@for t in $(C_TESTS); do for v in shared static; do \
	  echo "-- $$v/$$t"; $(call run,./$(BUILD)/$$v/$$t); done; done
	@echo "-- shared/test_dlopen"; $(call run,./$(BUILD)/shared/test_dlopen $(SO))
	@$(MAKE) --no-print-directory $(BUILD)/minijit > /dev/null
	@echo "-- minijit (make demo)"; if ./$(BUILD)/minijit > $(BUILD)/minijit.out 2>&1; \
	  then echo "test_minijit: 1 passed, 0 failed, 0 skipped" | tee -a $(LOG); \
	  else cat $(BUILD)/minijit.out; echo "FAILED: minijit" >> $(BUILD)/failed; fi
	@echo "== install, pkg-config, C++ and CMake consumers"
	@$(call run,$(MAKE) --no-print-directory install-check)
	@c-tests/summary.sh $(LOG) $(BUILD)/failed

# The protection tests on a CPU with protection keys: this machine's CPU
# hides PKU, so they run in a QEMU guest (TCG, -cpu max) that emulates it.
# Every emulated WRPKRU costs microseconds there, so the general C tests run
# in quick mode and test_pkeys takes its loop count from PKEYS_LOOPS.
# test_limits is left out: its RLIMIT probes commit hundreds of segments.
PKEYS_LOOPS ?= 300
PKEYS_DIR   := $(BUILD)/pkeys
PKEYS_QUICK := test_api test_bad_input test_threads test_lifecycle test_sweep_rss test_fork test_oom test_oom_recovery

check-pkeys: c-tests $(BUILD)/shared/test_pkeys $(BUILD)/minijit
	@echo "== the protection tests in a guest with emulated PKU"
	@c-tests/pkeys/vm.sh $(PKEYS_DIR) \
	  'test_pkeys WCPT_PKEYS_LOOPS=$(PKEYS_LOOPS) -- $(BUILD)/shared/test_pkeys' \
	  'test_protect -- $(BUILD)/shared/test_protect' \
	  'test_alias -- $(BUILD)/shared/test_alias' \
	  'test_config WCPT_TEST_REQUIRE_PKU=1 -- $(BUILD)/shared/test_config' \
	  'test_dlopen -- $(BUILD)/shared/test_dlopen $(SO)' \
	  'minijit -- $(BUILD)/minijit' \
	  $(foreach t,$(PKEYS_QUICK),'$(t) WCPT_TEST_QUICK=1 -- $(BUILD)/shared/$(t)') || true
	@c-tests/summary.sh $(PKEYS_DIR)/console.log $(PKEYS_DIR)/failed check-pkeys

SAN_FLAGS   := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
SAN_LOG     := $(BUILD)/sanitize.log
VALGRIND    := valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite

$(BUILD)/asan-shared/%: c-tests/%.c $(wildcard c-tests/*.h) include/wcpt.h $(SO) $(OUT)/libwcpt.so.$(SOVER)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(SAN_FLAGS) $< -o $@ -L$(OUT) -Wl,-rpath,'$$ORIGIN/../../$(OUT)' -lwcpt

$(BUILD)/asan-static/%: c-tests/%.c $(wildcard c-tests/*.h) include/wcpt.h $(A)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(SAN_FLAGS) $< -o $@ $(A) $(STATIC_LIBS)

# The C tests under AddressSanitizer + UndefinedBehaviorSanitizer (C side),
# against the .so and the .a, then under valgrind memcheck in quick mode
# (valgrind refuses pkey_alloc, so the table runs in the alias mode there).
sanitize: lib c-tests $(foreach t,$(C_TESTS),$(BUILD)/asan-shared/$(t) $(BUILD)/asan-static/$(t))
	@: > $(SAN_LOG); rm -f $(BUILD)/san-failed
	@for t in $(C_TESTS); do for v in asan-shared asan-static; do \
	  echo "-- $$v/$$t"; \
	  { WCPT_TEST_INSTRUMENTED=1 ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 ./$(BUILD)/$$v/$$t; } 2>&1 | tee -a $(SAN_LOG); \
	  [ $${PIPESTATUS[0]} -eq 0 ] || echo "FAILED: $$v/$$t" >> $(BUILD)/san-failed; done; done
	@for t in $(C_TESTS); do \
	  echo "-- valgrind shared/$$t"; \
	  { WCPT_TEST_QUICK=1 WCPT_TEST_INSTRUMENTED=1 $(VALGRIND) ./$(BUILD)/shared/$$t; } 2>&1 | tee -a $(SAN_LOG); \
	  [ $${PIPESTATUS[0]} -eq 0 ] || echo "FAILED: valgrind $$t" >> $(BUILD)/san-failed; done
	@echo "-- valgrind shared/test_dlopen"; \
	  { WCPT_TEST_QUICK=1 $(VALGRIND) ./$(BUILD)/shared/test_dlopen $(SO); } 2>&1 | tee -a $(SAN_LOG); \
	  [ $${PIPESTATUS[0]} -eq 0 ] || echo "FAILED: valgrind test_dlopen" >> $(BUILD)/san-failed
	@c-tests/summary.sh $(SAN_LOG) $(BUILD)/san-failed

BENCH_BIN = $$(ls -t target/release/deps/bench-* | grep -v '\.d$$' | head -1)

# Runs the benchmarks (one release binary, every baseline in the same run)
# under /usr/bin/time -v and writes BENCHMARKS.md; then wasm2c, the section
# against V8's own code, and its instruction counts (callgrind), appended.
# perf stat is used where the machine supports hardware counters.
bench:
	$(CARGO) bench --bench bench --features capi --no-run
	@BENCH_DATE="$$(date -u '+%Y-%m-%d %H:%M UTC')" BENCH_COMMIT="$$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
	  BENCH_OUT=$(CURDIR)/BENCHMARKS.md /usr/bin/time -v -o $(BUILD)/bench-time.txt $(BENCH_BIN) --bench
	@{ echo; echo "## Whole process (/usr/bin/time -v)"; echo; \
	  grep -E "Elapsed|Maximum resident|Percent of CPU|context switches" $(BUILD)/bench-time.txt | sed 's/^\s*/- /'; } \
	  | tee -a BENCHMARKS.md
	@if perf stat -e instructions true 2>&1 | grep -q "not supported"; then :; else \
	  { echo; echo "## perf stat (wcpt alloc+free pairs)"; echo; \
	    BENCH_ONLY=profile-wcpt perf stat -e cycles,instructions $(BENCH_BIN) --bench 2>&1 | grep -E "cycles|instructions" | sed 's/^/- /'; } \
	  | tee -a BENCHMARKS.md; fi
	@if [ -x "$(WASM2C_BIN)" ] && [ -f $(WASM2C_RT)/wasm-rt.h ]; then $(MAKE) --no-print-directory bench-wasm2c BENCH_APPEND=1; \
	  else { echo; echo "## wasm2c"; echo; echo "- not measured: wabt is not installed (apt-get install wabt)"; } | tee -a BENCHMARKS.md; fi
	@$(MAKE) --no-print-directory bench-v8real BENCH_APPEND=1
	@$(MAKE) --no-print-directory bench-count BENCH_APPEND=1
	@$(MAKE) --no-print-directory bench-asmjit BENCH_APPEND=1

# V8 15.2's WasmCodePointerTable, extracted unmodified from the `v8` crate
# (benches/v8real/fetch.sh) and compiled over stand-in headers of our own
# (benches/v8real/stubs), measured in one process with wcpt.
V8REAL      := $(BUILD)/v8real
V8REAL_SRC  := $(V8REAL)/v8/src/wasm/wasm-code-pointer-table.cc

$(V8REAL_SRC): benches/v8real/fetch.sh
	benches/v8real/fetch.sh $(V8REAL)
	@touch $@

$(V8REAL)/bench_v8real: benches/v8real/bench_v8real.cc $(V8REAL_SRC) $(wildcard benches/v8real/stubs/*/*.h benches/v8real/stubs/*/*/*.h) include/wcpt.h $(SO)
	$(CXX) -std=c++20 -O2 -g -fno-exceptions -fno-rtti -pthread -Wall -I$(V8REAL)/v8 -Ibenches/v8real/stubs -Iinclude \
	  benches/v8real/bench_v8real.cc $(V8REAL_SRC) -o $@ -L$(OUT) -lwcpt -Wl,-rpath,$(CURDIR)/$(OUT)

bench-v8real: $(V8REAL)/bench_v8real
	@{ echo; ./$(V8REAL)/bench_v8real $(if $(QUICK),--quick); } | $(if $(BENCH_APPEND),tee -a BENCHMARKS.md,cat)

# The C++ API (include/wcpt.hpp) and the asmjit engine (integrations/asmjit).
CPP_DIR   := $(BUILD)/cpp
CXXFLAGS_CPP := -O2 -g -Wall -Wextra -Werror -Iinclude -pthread
CPP_LINK  := -L$(OUT) -lwcpt -Wl,-rpath,'$$ORIGIN/../../$(OUT)'

$(CPP_DIR)/test_hpp: c-tests/cpp/test_hpp.cpp include/wcpt.hpp include/wcpt.h $(SO)
	@mkdir -p $(dir $@)
	$(CXX) -std=c++17 $(CXXFLAGS_CPP) $< -o $@ $(CPP_LINK)

$(CPP_DIR)/test_hpp_noexcept: c-tests/cpp/test_hpp.cpp include/wcpt.hpp include/wcpt.h $(SO)
	@mkdir -p $(dir $@)
	$(CXX) -std=c++17 -fno-exceptions -fno-rtti $(CXXFLAGS_CPP) $< -o $@ $(CPP_LINK)

$(CPP_DIR)/test_hpp_cxx20: c-tests/cpp/test_hpp.cpp include/wcpt.hpp include/wcpt.h $(SO)
	@mkdir -p $(dir $@)
	$(CXX) -std=c++20 $(CXXFLAGS_CPP) $< -o $@ $(CPP_LINK)

$(CPP_DIR)/%_engine: integrations/asmjit/%_engine.cpp integrations/asmjit/engine.hpp include/wcpt.hpp include/wcpt.h $(SO)
	@mkdir -p $(dir $@)
	$(CXX) -std=c++17 $(CXXFLAGS_CPP) $< -o $@ $(CPP_LINK) -lasmjit -lrt

CPP_TESTS := test_hpp test_hpp_noexcept test_hpp_cxx20 test_engine

check-cpp: lib
	@integrations/asmjit/deps.sh
	@$(MAKE) --no-print-directory $(addprefix $(CPP_DIR)/,$(CPP_TESTS)) > /dev/null
	@mkdir -p $(CPP_DIR); : > $(CPP_DIR)/log; rm -f $(CPP_DIR)/failed
	@for t in $(CPP_TESTS); do echo "-- $$t"; \
	  { ./$(CPP_DIR)/$$t 2>&1; echo "exit $$?" > $(CPP_DIR)/rc; } | tee -a $(CPP_DIR)/log; \
	  grep -q "exit 0" $(CPP_DIR)/rc || echo "FAILED: $$t" >> $(CPP_DIR)/failed; done
	@c-tests/summary.sh $(CPP_DIR)/log $(CPP_DIR)/failed check-cpp

bench-asmjit: lib
	@integrations/asmjit/deps.sh
	@$(MAKE) --no-print-directory $(CPP_DIR)/bench_engine > /dev/null
	@{ echo; ./$(CPP_DIR)/bench_engine $(if $(QUICK),--quick); } | $(if $(BENCH_APPEND),tee -a BENCHMARKS.md,cat)

# AArch64: cross-built here, run under QEMU's user-mode emulator (the Rust
# tests, every C test static and shared, test_dlopen and the demo);
# c-tests/aarch64/deps.sh installs Debian's arm64 route.
check-aarch64:
	@SOVER=$(SOVER) c-tests/aarch64/check.sh $(BUILD)/aarch64 $(C_TESTS)

# Instructions per operation, wcpt and V8's own code in the same harness,
# counted by callgrind (machine-independent; about 10 s).
bench-count: $(V8REAL)/bench_v8real
	@{ echo; benches/v8real/count.sh $(V8REAL)/bench_v8real; } | $(if $(BENCH_APPEND),tee -a BENCHMARKS.md,cat)

SOAK_SECONDS ?= 120

$(BUILD)/soak: c-tests/soak.c include/wcpt.h $(A)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $< -o $@ $(A) $(STATIC_LIBS)

soak: $(BUILD)/soak
	./$(BUILD)/soak $(SOAK_SECONDS)

FUZZ_SECONDS ?= 120

# New inputs go to fuzz/corpus-work (ignored by git); the committed corpus in
# fuzz/corpus/differential is replayed by `cargo test` (tests/fuzz_replay.rs).
fuzz:
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	@mkdir -p fuzz/corpus-work
	cargo +nightly fuzz run differential fuzz/corpus-work fuzz/corpus/differential -- \
	  -max_total_time=$(FUZZ_SECONDS) -max_len=4096

loom:
	LOOM_MAX_PREEMPTIONS=3 RUSTFLAGS="--cfg loom" $(CARGO) test --release --lib --target-dir target/loom

$(BUILD)/minijit: examples/minijit.c include/wcpt.h $(A)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $< -o $@ $(A) $(STATIC_LIBS)

demo: $(BUILD)/minijit
	./$(BUILD)/minijit

# Installed libraries are stripped of debug info (the archive keeps its
# symbol index); the CMake package finds everything relative to itself.
install: lib $(BUILD)/native-static-libs.txt
	@libs="$$(cat $(BUILD)/native-static-libs.txt)"; \
	cmake_libs="$$(echo $$libs | sed 's/-l//g; s/ /;/g')"; \
	L="$(DESTDIR)$(LIBDIR)"; I="$(DESTDIR)$(INCLUDEDIR)"; \
	cmake_dir="$(LIBDIR)/cmake/wcpt"; \
	lib_rel="$$(realpath -m --relative-to="$$cmake_dir" "$(LIBDIR)")"; \
	inc_rel="$$(realpath -m --relative-to="$$cmake_dir" "$(INCLUDEDIR)")"; \
	set -e; \
	install -d "$$L/pkgconfig" "$$L/cmake/wcpt" "$$I"; \
	install -m 755 $(SO) "$$L/libwcpt.so.$(VERSION)"; \
	strip --strip-unneeded "$$L/libwcpt.so.$(VERSION)"; \
	ln -sf libwcpt.so.$(VERSION) "$$L/libwcpt.so.$(SOVER)"; \
	ln -sf libwcpt.so.$(SOVER) "$$L/libwcpt.so"; \
	install -m 644 $(A) "$$L/libwcpt.a"; \
	strip --strip-debug "$$L/libwcpt.a"; \
	install -m 644 include/wcpt.h "$$I/wcpt.h"; \
	install -m 644 include/wcpt.hpp "$$I/wcpt.hpp"; \
	subst="s|@PREFIX@|$(PREFIX)|g; s|@LIBDIR@|$(LIBDIR)|g; s|@INCLUDEDIR@|$(INCLUDEDIR)|g; s|@LIB_REL@|$$lib_rel|g; s|@INC_REL@|$$inc_rel|g; s|@VERSION@|$(VERSION)|g; s|@MAJOR@|$(MAJOR)|g; s|@SOVER@|$(SOVER)|g; s|@MINOR@|$(MINOR)|g; s|@LIBS_PRIVATE@|$$libs|g; s|@CMAKE_LIBS@|$$cmake_libs|g"; \
	sed "$$subst" packaging/wcpt.pc.in > "$$L/pkgconfig/wcpt.pc"; \
	sed "$$subst" packaging/wcpt-static.pc.in > "$$L/pkgconfig/wcpt-static.pc"; \
	sed "$$subst" packaging/wcptConfig.cmake.in > "$$L/cmake/wcpt/wcptConfig.cmake"; \
	sed "$$subst" packaging/wcptConfigVersion.cmake.in > "$$L/cmake/wcpt/wcptConfigVersion.cmake"; \
	echo "installed wcpt $(VERSION): libraries in $(DESTDIR)$(LIBDIR), header in $(DESTDIR)$(INCLUDEDIR)"

uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))
	-rmdir "$(DESTDIR)$(LIBDIR)/cmake/wcpt" "$(DESTDIR)$(LIBDIR)/cmake" "$(DESTDIR)$(LIBDIR)/pkgconfig" 2>/dev/null

STAGE := $(abspath $(BUILD)/stage)

# Installs into a DESTDIR, builds and runs the consumers against it, then
# uninstalls and checks that nothing is left behind: with the default
# libdir, then with lib64 and a multiarch libdir (the quick consumers).
install-check: lib
	@status=0; \
	for layout in "lib" "lib64" "lib/x86_64-linux-gnu"; do \
	  rm -rf $(STAGE); \
	  $(MAKE) --no-print-directory install DESTDIR=$(STAGE) prefix=/usr/local libdir=/usr/local/$$layout > /dev/null || status=1; \
	  echo "-- libdir /usr/local/$$layout"; \
	  VERSION=$(VERSION) SOVER=$(SOVER) STATIC_LIBS="$(STATIC_LIBS)" LIB=$$layout c-tests/consumers/run.sh $(STAGE) /usr/local $(SO) || status=1; \
	  $(MAKE) --no-print-directory uninstall DESTDIR=$(STAGE) prefix=/usr/local libdir=/usr/local/$$layout > /dev/null; \
	  left=$$(find $(STAGE) -type f -o -type l); \
	  if [ -n "$$left" ]; then echo "uninstall left: $$left"; echo "test_uninstall: 0 passed, 1 failed, 0 skipped"; status=1; \
	  else echo "test_uninstall: 1 passed, 0 failed, 0 skipped"; fi; \
	done; exit $$status

clean:
	rm -rf $(BUILD)
	$(CARGO) clean

# ---- wasm2c on wcpt (integrations/wasm2c) ---------------------------------
# WABT's wasm2c (Debian's wabt 1.0.32) with funcrefs rewritten to hold wcpt
# handles, checked with WABT's own spec runner over ../shared/wasm2c-spec.
WASM2C_BIN  ?= $(shell command -v wasm2c)
WAST2JSON   ?= $(shell command -v wast2json)
WAT2WASM    ?= $(shell command -v wat2wasm)
WASM2C_RT   ?= /usr/src/wasm2c
SPEC_DIR    ?= $(CURDIR)/../shared/wasm2c-spec
W2C         := $(BUILD)/wasm2c
# Stock wasm2c needs these two with gcc 12 (memory_init, names); the same here.
W2C_CFLAGS  := --cflags=-Wno-array-bounds --cflags=-Wno-bidi-chars
W2C_SRC     := integrations/wasm2c/wcpt-wasm2c.py $(wildcard integrations/wasm2c/runtime/*)

# The runtime (WABT's, patched at build time: nothing of WABT is committed)
# and a bin folder for the runner: wasm2c (the real one, then the rewrite),
# wast2json, and a cc that adds wcpt's header and library.
$(W2C)/ready: $(W2C_SRC) $(SO) $(OUT)/libwcpt.so.$(SOVER) Makefile
	@test -x "$(WASM2C_BIN)" && test -f $(WASM2C_RT)/wasm-rt.h || \
	  { echo "wasm2c 1.0.32 and its runtime are needed: apt-get install wabt" >&2; exit 1; }
	@rm -rf $(W2C)/rt $(W2C)/bin && mkdir -p $(W2C)/bin
	python3 integrations/wasm2c/wcpt-wasm2c.py runtime $(WASM2C_RT) integrations/wasm2c/runtime $(W2C)/rt
	@printf '#!/bin/sh\nexec python3 %s wasm2c %s "$$@"\n' "$(CURDIR)/integrations/wasm2c/wcpt-wasm2c.py" "$(WASM2C_BIN)" > $(W2C)/bin/wasm2c
	@ln -sf "$(WAST2JSON)" $(W2C)/bin/wast2json
	@printf '#!/bin/sh\n# cc with wcpt: its header always, libwcpt.so when linking.\nfor a; do [ "$$a" = -c ] && exec %s -I%s "$$@"; done\nexec %s -I%s "$$@" -L%s -Wl,-rpath,%s -lwcpt -lpthread\n' \
	  "$(CC)" "$(CURDIR)/include" "$(CC)" "$(CURDIR)/include" "$(CURDIR)/$(OUT)" "$(CURDIR)/$(OUT)" > $(W2C)/bin/cc
	@chmod +x $(W2C)/bin/wasm2c $(W2C)/bin/cc
	@touch $@

W2C_SPEC = python3 integrations/wasm2c/spec.py --spec-dir $(SPEC_DIR) --bindir $(CURDIR)/$(W2C)/bin \
	  --wasmrt-dir $(CURDIR)/$(W2C)/rt --cc $(CURDIR)/$(W2C)/bin/cc $(W2C_CFLAGS)

# The module for the integration's own tests and benchmark.
$(W2C)/funcs.wasm: integrations/wasm2c/tests/funcs.wat
	@mkdir -p $(W2C)
	$(WAT2WASM) $< -o $@

# What the runner compiles with, for the programs built here too.
W2C_CC_FLAGS := -O2 -Wall -Werror -Wno-unused -fno-optimize-sibling-calls -frounding-math -fsignaling-nans \
	  -std=gnu99 -D_DEFAULT_SOURCE

# $(call w2c_build,OUT_DIR,WASM2C,RUNTIME_DIR,CC,MAIN.c,EXE)
define w2c_build
	@mkdir -p $(1)
	$(2) $(W2C)/funcs.wasm -n funcs -o $(1)/funcs.c
	$(4) $(W2C_CC_FLAGS) -I$(3) -I$(1) -c $(1)/funcs.c -o $(1)/funcs.o
	$(4) $(W2C_CC_FLAGS) -I$(3) -c $(3)/wasm-rt-impl.c -o $(1)/wasm-rt-impl.o
	$(4) $(W2C_CC_FLAGS) -I$(3) -I$(1) -c $(5) -o $(1)/main.o
	$(4) $(1)/funcs.o $(1)/wasm-rt-impl.o $(1)/main.o -o $(6) -lm
endef

# make check-wasm2c: WABT's 106 spec tests on wcpt, the negative control
# (no signature check: call_indirect must fail), the integration's own
# tests and the rewriter's refusals.
check-wasm2c: $(W2C)/ready $(W2C)/funcs.wasm
	@echo "== wasm2c spec suite on wcpt (WABT's runner, $(SPEC_DIR))"
	@rm -rf $(W2C)/spec && $(W2C_SPEC) --out-dir $(CURDIR)/$(W2C)/spec | tee $(W2C)/spec.log; \
	  grep -q "^wasm2c spec: 106 passed, 0 failed$$" $(W2C)/spec.log
	@echo "== negative control: call_indirect with the signature check compiled out must fail"
	@rm -rf $(W2C)/negative && if $(W2C_SPEC) --out-dir $(CURDIR)/$(W2C)/negative \
	  --cflags=-DWASM_RT_WCPT_UNCHECKED_SIGNATURE --label "negative control" call_indirect; then \
	  echo "negative control: call_indirect passed without the signature check" >&2; exit 1; \
	  else echo "negative control: failed as it must"; fi
	@echo "== integration tests"
	$(call w2c_build,$(W2C)/test,$(W2C)/bin/wasm2c,$(W2C)/rt,$(W2C)/bin/cc,integrations/wasm2c/tests/test_wasm2c.c,$(W2C)/test/test_wasm2c)
	$(W2C)/test/test_wasm2c
	integrations/wasm2c/tests/rewriter.sh integrations/wasm2c/wcpt-wasm2c.py $(WASM2C_BIN) $(W2C)/funcs.wasm $(W2C)/rewriter

# make bench-wasm2c: the call_indirect loop, stock wasm2c against wasm2c on
# wcpt, alternating runs; appends its section to BENCHMARKS.md when
# BENCH_APPEND=1 (make bench does).
bench-wasm2c: $(W2C)/ready $(W2C)/funcs.wasm
	$(call w2c_build,$(W2C)/bench-stock,$(WASM2C_BIN),$(WASM2C_RT),$(CC),integrations/wasm2c/bench/bench_w2c.c,$(W2C)/bench-stock/bench)
	$(call w2c_build,$(W2C)/bench-wcpt,$(W2C)/bin/wasm2c,$(W2C)/rt,$(W2C)/bin/cc,integrations/wasm2c/bench/bench_w2c.c,$(W2C)/bench-wcpt/bench)
	@integrations/wasm2c/bench/compare.sh $(W2C)/bench-stock/bench $(W2C)/bench-wcpt/bench $(if $(BENCH_APPEND),BENCHMARKS.md)
