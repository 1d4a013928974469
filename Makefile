# wcpt: build, test, demo and benchmarks.
#
#   make demo    build and run the example (examples/)
#   make check   header check, Rust tests, loom models, C tests (.so and .a)
#   make loom    the loom models with a deeper preemption bound
#   make header  regenerate include/wcpt.h with cbindgen
#   make clean

SHELL       := /bin/bash
CARGO       ?= cargo
CC          ?= cc
BUILD       := build
LIBDIR      := target/release
SO          := $(LIBDIR)/libwcpt.so
A           := $(LIBDIR)/libwcpt.a
# What rustc reports as the staticlib's native dependencies
# (`cargo rustc --release --crate-type staticlib -- --print native-static-libs`).
STATIC_LIBS := -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc
CWARN       := -Wall -Wextra -pedantic -Werror
CFLAGS      ?= -O2 -g
CFLAGS_ALL  := -std=c11 -D_GNU_SOURCE $(CWARN) $(CFLAGS) -Iinclude -Ic-tests -pthread
C_TESTS     := test_api test_threads test_lifecycle test_sweep_rss test_fork test_limits test_protect
LOG         := $(BUILD)/check.log
LOOM_PREEMPTIONS ?= 2
RUST_SRC    := $(wildcard src/*.rs src/*/*.rs) build.rs cbindgen.toml Cargo.toml

.PHONY: all lib header check c-tests demo loom clean

all: lib

lib: $(SO) $(A)

$(SO) $(A) &: $(RUST_SRC)
	$(CARGO) build --release
	@touch $(SO) $(A)

header:
	$(CARGO) build --release

$(BUILD)/shared/%: c-tests/%.c c-tests/check.h include/wcpt.h $(SO)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $< -o $@ -L$(LIBDIR) -Wl,-rpath,'$$ORIGIN/../../$(LIBDIR)' -lwcpt

$(BUILD)/static/%: c-tests/%.c c-tests/check.h include/wcpt.h $(A)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $< -o $@ $(A) $(STATIC_LIBS)

$(BUILD)/shared/test_dlopen: c-tests/test_dlopen.c c-tests/check.h include/wcpt.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $< -o $@ -ldl

c-tests: $(foreach t,$(C_TESTS),$(BUILD)/shared/$(t) $(BUILD)/static/$(t)) $(BUILD)/shared/test_dlopen

# Runs a command, appends its output to the log, and remembers a failure
# without stopping, so that the summary counts everything.
run = { $(1); } 2>&1 | tee -a $(LOG); [ $${PIPESTATUS[0]} -eq 0 ] || echo "FAILED: $(1)" >> $(BUILD)/failed

check:
	@mkdir -p $(BUILD); : > $(LOG); rm -f $(BUILD)/failed
	@echo "== header: include/wcpt.h must be what cbindgen generates"
	WCPT_HEADER=check $(CARGO) build --release
	@$(MAKE) --no-print-directory c-tests
	@echo "== Rust tests (release, then debug with debug assertions)"
	@$(call run,$(CARGO) test --release)
	@$(call run,$(CARGO) test)
	@echo "== loom models (LOOM_MAX_PREEMPTIONS=$(LOOM_PREEMPTIONS))"
	@$(call run,LOOM_MAX_PREEMPTIONS=$(LOOM_PREEMPTIONS) RUSTFLAGS="--cfg loom" $(CARGO) test --release --lib --target-dir target/loom)
	@echo "== C tests against libwcpt.so and libwcpt.a"
	@for t in $(C_TESTS); do for v in shared static; do \
	  echo "-- $$v/$$t"; $(call run,./$(BUILD)/$$v/$$t); done; done
	@echo "-- shared/test_dlopen"; $(call run,./$(BUILD)/shared/test_dlopen $(SO))
	@c-tests/summary.sh $(LOG) $(BUILD)/failed

loom:
	LOOM_MAX_PREEMPTIONS=3 RUSTFLAGS="--cfg loom" $(CARGO) test --release --lib --target-dir target/loom

$(BUILD)/demo: examples/demo.c include/wcpt.h $(A)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $< -o $@ $(A) $(STATIC_LIBS)

demo: $(BUILD)/demo
	./$(BUILD)/demo

clean:
	rm -rf $(BUILD)
	$(CARGO) clean
