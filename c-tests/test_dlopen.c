/* A thread that exists before the library is loaded (dlopen after creating
 * it) can call every function, and read directly after wcpt_thread_attach.
 * Linux gives such a thread no access to a protection key allocated later.
 * With pkeys on, a stray write from it faults after every kind of call, and
 * so does one from the threads it creates, before and after it attaches. */
#include "check.h"
#include "stray.h"
#include "wcpt.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

static struct {
  wcpt_status (*init)(void);
  wcpt_handle (*alloc)(uintptr_t, uint64_t);
  wcpt_status (*free_)(wcpt_handle);
  uintptr_t (*get)(wcpt_handle);
  uintptr_t (*get_checked)(wcpt_handle, uint64_t);
  wcpt_status (*set)(wcpt_handle, uintptr_t);
  wcpt_handle (*native_handle)(uintptr_t);
  size_t (*sweep)(size_t);
  wcpt_status (*stats)(wcpt_stats_t *);
  const void *(*table_base)(void);
  wcpt_status (*thread_attach)(void);
  wcpt_protection (*protection_mode)(void);
  wcpt_status (*set_many)(const wcpt_handle *, const uintptr_t *, size_t);
  wcpt_status (*code_region_add)(uintptr_t, size_t);
  wcpt_status (*code_region_remove)(uintptr_t, size_t);
  const char *(*status_str)(wcpt_status);
  wcpt_status (*last_error)(void);
  void (*signal_enter)(void);
  const char *(*version)(void);
  void (*teardown)(void);
} api;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int loaded;

static int pkeys;      /* protection is on: probe stray writes */
static uint32_t ad, wd; /* the key's PKRU bits */
static wcpt_handle probe_h;

static volatile uint64_t *entry_of(wcpt_handle h) {
  return (volatile uint64_t *)((uintptr_t)api.table_base() + (h & WCPT_INDEX_MASK) * WCPT_ENTRY_SIZE);
}

/* With pkeys on, a stray write to probe_h's entry faults, whatever library
 * call came before, and the entry keeps its value. */
#define PROBE(expect)                                                          \
  do {                                                                         \
    if (pkeys) {                                                               \
      CHECK_EQ(stray_write(entry_of(probe_h), 0x4141), SEGV_PKUERR);           \
      CHECK_EQ(api.get(probe_h), (expect));                                    \
    }                                                                          \
  } while (0)

/* A thread created by the early thread: it inherits its creator's rights. */
static void *grandchild(void *arg) {
  int attached = (int)(intptr_t)arg;
  if (pkeys) CHECK_EQ(test_pkru_read() & (ad | wd), attached ? wd : ad);
  if (!attached) CHECK_EQ(api.thread_attach(), WCPT_OK);
  CHECK_EQ(*entry_of(probe_h), 0x6000); /* direct read */
  PROBE(0x6000);
  return NULL;
}

static void *early_thread(void *arg) {
  (void)arg;
  pthread_mutex_lock(&mu);
  while (!loaded) pthread_cond_wait(&cv, &mu);
  pthread_mutex_unlock(&mu);
  /* Linux gave this thread no access to the key the load allocated. */
  if (pkeys) CHECK_EQ(test_pkru_read() & (ad | wd), ad);
  pthread_t g;
  pthread_create(&g, NULL, grandchild, (void *)0); /* before any repair */
  pthread_join(g, NULL);
  PROBE(0x6000);
  CHECK_EQ(api.init(), WCPT_OK);
  PROBE(0x6000);
  wcpt_handle h = api.alloc(0x6100, 6);
  CHECK(h != WCPT_INVALID_HANDLE);
  PROBE(0x6000);
  CHECK_EQ(api.get(h), 0x6100);
  PROBE(0x6000);
  CHECK_EQ(api.get_checked(h, 6), 0x6100);
  PROBE(0x6000);
  CHECK_EQ(api.set(h, 0x6200), WCPT_OK);
  PROBE(0x6000);
  wcpt_handle n = api.native_handle(0x6300);
  CHECK_EQ(api.get(n), 0x6300);
  PROBE(0x6000);
  wcpt_stats_t s;
  CHECK_EQ(api.stats(&s), WCPT_OK);
  PROBE(0x6000);
  api.sweep(0);
  PROBE(0x6000);
  CHECK_EQ(api.thread_attach(), WCPT_OK);
  PROBE(0x6000);
  if (pkeys) CHECK_EQ(test_pkru_read() & (ad | wd), wd);
  pthread_create(&g, NULL, grandchild, (void *)1); /* after the repair */
  pthread_join(g, NULL);
  const unsigned char *base = api.table_base();
  uint64_t direct;
  memcpy(&direct, base + (h & WCPT_INDEX_MASK) * WCPT_ENTRY_SIZE, 8);
  CHECK_EQ(direct, 0x6200);
  uintptr_t ep = 0x6400;
  CHECK_EQ(api.set_many(&h, &ep, 1), WCPT_OK);
  CHECK_EQ(api.get(h), 0x6400);
  PROBE(0x6000);
  CHECK_EQ(api.code_region_add(0x6000, 0x1000), WCPT_OK);
  CHECK_EQ(api.alloc(0x9000, 0), WCPT_INVALID_HANDLE);
  CHECK_EQ(api.last_error(), WCPT_ERR_NOT_CODE);
  CHECK_EQ(api.code_region_remove(0x6000, 0x1000), WCPT_OK);
  PROBE(0x6000);
  CHECK(api.status_str(WCPT_ERR_NOT_CODE) != NULL);
  CHECK(api.version() != NULL);
  /* pkeys where they work, else the alias; none only when asked for. */
  const char *asked = getenv("WCPT_PROTECT");
  if (asked && strcmp(asked, "off") == 0)
    CHECK_EQ(api.protection_mode(), WCPT_PROTECTION_NONE);
  else
    CHECK_EQ(api.protection_mode(), pkeys ? WCPT_PROTECTION_PKEYS : WCPT_PROTECTION_ALIAS);
  api.signal_enter();
  PROBE(0x6000);
  CHECK_EQ(api.free_(h), WCPT_OK);
  CHECK_EQ(api.get(h), 0);
  PROBE(0x6000);
  if (pkeys) CHECK_EQ(test_pkru_read() & (ad | wd), wd);
  api.teardown();
  CHECK_EQ(api.init(), WCPT_OK);
  return NULL;
}

static int used; /* late_user: 1 once it used the table, 2 to let it exit */

static void *late_user(void *arg) {
  (void)arg;
  wcpt_handle h = api.alloc(0x6500, 5);
  CHECK(h != WCPT_INVALID_HANDLE);
  CHECK_EQ(api.free_(h), WCPT_OK);
  pthread_mutex_lock(&mu);
  used = 1;
  pthread_cond_broadcast(&cv);
  while (used < 2) pthread_cond_wait(&cv, &mu);
  pthread_mutex_unlock(&mu);
  return NULL; /* the slot's destructor runs now, after dlclose */
}

#define LOAD(field, name)                                  \
  do {                                                     \
    *(void **)&api.field = dlsym(lib, name);               \
    CHECK(api.field != NULL);                              \
  } while (0)

static const char *so_path;

static void test_thread_from_before_the_load(void) {
  pthread_t t;
  pthread_create(&t, NULL, early_thread, NULL);
  void *lib = dlopen(so_path, RTLD_NOW);
  CHECK(lib != NULL);
  if (!lib) {
    fprintf(stderr, "dlopen: %s\n", dlerror());
    return;
  }
  LOAD(init, "wcpt_init");
  LOAD(alloc, "wcpt_alloc");
  LOAD(free_, "wcpt_free");
  LOAD(get, "wcpt_get");
  LOAD(get_checked, "wcpt_get_checked");
  LOAD(set, "wcpt_set");
  LOAD(native_handle, "wcpt_native_handle");
  LOAD(sweep, "wcpt_sweep");
  LOAD(stats, "wcpt_stats");
  LOAD(table_base, "wcpt_table_base");
  LOAD(thread_attach, "wcpt_thread_attach");
  LOAD(protection_mode, "wcpt_protection_mode");
  LOAD(set_many, "wcpt_set_many");
  LOAD(code_region_add, "wcpt_code_region_add");
  LOAD(code_region_remove, "wcpt_code_region_remove");
  LOAD(status_str, "wcpt_status_str");
  LOAD(last_error, "wcpt_last_error");
  LOAD(signal_enter, "wcpt_signal_enter");
  LOAD(version, "wcpt_version");
  LOAD(teardown, "wcpt_teardown");
  printf("  protection mode: %s\n", api.protection_mode() == WCPT_PROTECTION_PKEYS ? "pkeys" : api.protection_mode() == WCPT_PROTECTION_ALIAS ? "alias" : "none");
  probe_h = api.alloc(0x6000, 6);
  if (api.protection_mode() == WCPT_PROTECTION_PKEYS) {
    int key = stray_key_of((const void *)entry_of(probe_h));
    CHECK(key > 0);
    ad = 1u << (2 * key);
    wd = 2u << (2 * key);
    pkeys = 1;
    stray_install();
  }
  pthread_mutex_lock(&mu);
  loaded = 1;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
  pthread_join(t, NULL);
  /* A thread that used the library (so it holds a thread slot, and a free
   * entry on its stack) exits after dlclose: the slot's destructor runs at
   * its exit, so the library must still be mapped (it is linked with
   * -z nodelete). */
  pthread_t user;
  pthread_create(&user, NULL, late_user, NULL);
  pthread_mutex_lock(&mu);
  while (used < 1) pthread_cond_wait(&cv, &mu);
  pthread_mutex_unlock(&mu);
  CHECK_EQ(dlclose(lib), 0);
  pthread_mutex_lock(&mu);
  used = 2;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
  pthread_join(user, NULL);
}

int main(int argc, char **argv) {
  so_path = argc > 1 ? argv[1] : "libwcpt.so";
  RUN(test_thread_from_before_the_load);
  return check_finish("test_dlopen");
}
