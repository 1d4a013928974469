/* wasm2c runtime on wcpt: the funcref registry (see wasm-rt-wcpt.h).
 *
 * Compiled as part of the patched wasm-rt-impl.c, which includes this file
 * at its end. Everything here runs under one mutex, like the rest of the
 * wasm2c 1.0.32 runtime it is at least as thread-safe as: funcrefs are made
 * at instantiation and by ref.func, never on the call_indirect path, which
 * reads only the table and the read-only base page. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "wasm-rt.h"

wasm_rt_wcpt_base_page_t wasm_rt_wcpt_base_page __attribute__((aligned(4096)));

/* One funcref handle owned by an instance. */
typedef struct wcpt_record {
  struct wcpt_record* bucket_next;
  struct wcpt_record* owner_next;
  uintptr_t func;
  void* module_instance;
  uint32_t func_type;
  wcpt_handle handle;
} wcpt_record;

/* A live instance: the bytes its funcrefs may be closed over, and the
 * handles it owns. */
typedef struct {
  uintptr_t start, end;
  wcpt_record* records;
} wcpt_owner;

static pthread_mutex_t g_wcpt_lock = PTHREAD_MUTEX_INITIALIZER;
static wcpt_record** g_wcpt_buckets;
static size_t g_wcpt_bucket_count; /* a power of two, or 0 */
static size_t g_wcpt_record_count;
static wcpt_owner* g_wcpt_owners;
static size_t g_wcpt_owner_count, g_wcpt_owner_capacity;

static void wcpt_fatal(const char* what, int status) {
  fprintf(stderr, "wasm-rt-wcpt: %s (wcpt status %d)\n", what, status);
  abort();
}

void wasm_rt_wcpt_init(void) {
  if (wasm_rt_wcpt_base_page.base != NULL)
    return; /* set once; the page is read-only from then on */
  wcpt_status status = wcpt_init();
  if (status != WCPT_OK)
    wcpt_fatal("cannot create the code pointer table", (int)status);
  wasm_rt_wcpt_base_page.base = wcpt_table_base();
  if (mprotect(&wasm_rt_wcpt_base_page, sizeof wasm_rt_wcpt_base_page,
               PROT_READ) != 0) {
    perror("wasm-rt-wcpt: mprotect of the table base page");
    abort();
  }
}

static size_t wcpt_hash(uintptr_t func, uint32_t func_type, void* instance) {
  uint64_t h = (uint64_t)func * 0x9E3779B97F4A7C15ull;
  h ^= ((uint64_t)(uintptr_t)instance + func_type) * 0xC2B2AE3D27D4EB4Full;
  return (size_t)(h ^ (h >> 29));
}

static wcpt_owner* wcpt_find_owner(uintptr_t p) {
  for (size_t i = 0; i < g_wcpt_owner_count; i++)
    if (p >= g_wcpt_owners[i].start && p < g_wcpt_owners[i].end)
      return &g_wcpt_owners[i];
  return NULL;
}

/* Doubles the bucket array; false if memory is refused (nothing changes). */
static bool wcpt_grow_buckets(void) {
  size_t n = g_wcpt_bucket_count ? g_wcpt_bucket_count * 2 : 256;
  wcpt_record** buckets = calloc(n, sizeof *buckets);
  if (buckets == NULL)
    return false;
  for (size_t i = 0; i < g_wcpt_bucket_count; i++) {
    wcpt_record* r = g_wcpt_buckets[i];
    while (r != NULL) {
      wcpt_record* next = r->bucket_next;
      size_t b = wcpt_hash(r->func, r->func_type, r->module_instance) & (n - 1);
      r->bucket_next = buckets[b];
      buckets[b] = r;
      r = next;
    }
  }
  free(g_wcpt_buckets);
  g_wcpt_buckets = buckets;
  g_wcpt_bucket_count = n;
  return true;
}

/* Frees every handle `owner` holds and forgets the owner. */
static void wcpt_release_owner(wcpt_owner* owner) {
  wcpt_record* r = owner->records;
  while (r != NULL) {
    wcpt_record* next = r->owner_next;
    size_t b = wcpt_hash(r->func, r->func_type, r->module_instance) &
               (g_wcpt_bucket_count - 1);
    wcpt_record** link = &g_wcpt_buckets[b];
    while (*link != r)
      link = &(*link)->bucket_next;
    *link = r->bucket_next;
    wcpt_status status = wcpt_free(r->handle);
    if (status != WCPT_OK) /* only this file frees these handles */
      wcpt_fatal("freeing an instance's funcref handle failed", (int)status);
    free(r);
    g_wcpt_record_count--;
    r = next;
  }
  *owner = g_wcpt_owners[--g_wcpt_owner_count];
}

void wasm_rt_wcpt_instance_begin(void* instance, size_t size) {
  uintptr_t start = (uintptr_t)instance, end = start + size;
  bool refused = false;
  pthread_mutex_lock(&g_wcpt_lock);
  /* An instance instantiated again without _free: its old handles go. */
  for (size_t i = 0; i < g_wcpt_owner_count;) {
    if (g_wcpt_owners[i].start < end && start < g_wcpt_owners[i].end)
      wcpt_release_owner(&g_wcpt_owners[i]);
    else
      i++;
  }
  if (g_wcpt_owner_count == g_wcpt_owner_capacity) {
    size_t n = g_wcpt_owner_capacity ? g_wcpt_owner_capacity * 2 : 16;
    wcpt_owner* owners = realloc(g_wcpt_owners, n * sizeof *owners);
    if (owners == NULL) {
      refused = true;
    } else {
      g_wcpt_owners = owners;
      g_wcpt_owner_capacity = n;
    }
  }
  if (!refused)
    g_wcpt_owners[g_wcpt_owner_count++] = (wcpt_owner){start, end, NULL};
  pthread_mutex_unlock(&g_wcpt_lock);
  if (refused) /* trap only after unlocking: a trap longjmps out */
    wasm_rt_trap(WASM_RT_TRAP_EXHAUSTION);
}

void wasm_rt_wcpt_instance_free(void* instance, size_t size) {
  (void)size;
  pthread_mutex_lock(&g_wcpt_lock);
  wcpt_owner* owner = wcpt_find_owner((uintptr_t)instance);
  if (owner != NULL && owner->start == (uintptr_t)instance)
    wcpt_release_owner(owner);
  pthread_mutex_unlock(&g_wcpt_lock);
}

wasm_rt_funcref_t wasm_rt_wcpt_funcref(uint32_t func_type,
                                       wasm_rt_function_ptr_t func,
                                       void* module_instance) {
  uintptr_t address = (uintptr_t)func;
  wcpt_handle handle = WCPT_INVALID_HANDLE;
  pthread_mutex_lock(&g_wcpt_lock);
  wcpt_owner* owner = wcpt_find_owner((uintptr_t)module_instance);
  if (owner == NULL) {
    pthread_mutex_unlock(&g_wcpt_lock);
    fprintf(stderr,
            "wasm-rt-wcpt: funcref closed over %p, which is no live instance "
            "(was the module's code rewritten by wcpt-wasm2c?)\n",
            module_instance);
    abort();
  }
  wcpt_record* r = NULL;
  if (g_wcpt_bucket_count != 0) {
    size_t b = wcpt_hash(address, func_type, module_instance) &
               (g_wcpt_bucket_count - 1);
    for (r = g_wcpt_buckets[b]; r != NULL; r = r->bucket_next)
      if (r->func == address && r->func_type == func_type &&
          r->module_instance == module_instance)
        break;
  }
  if (r != NULL) {
    handle = r->handle;
  } else if ((g_wcpt_record_count < g_wcpt_bucket_count ||
              wcpt_grow_buckets()) &&
             (r = malloc(sizeof *r)) != NULL) {
    handle = wcpt_alloc(address, WASM_RT_WCPT_SIGNATURE(func_type));
    if (handle == WCPT_INVALID_HANDLE) {
      free(r);
    } else {
      size_t b = wcpt_hash(address, func_type, module_instance) &
                 (g_wcpt_bucket_count - 1);
      *r = (wcpt_record){g_wcpt_buckets[b], owner->records, address,
                         module_instance, func_type, handle};
      g_wcpt_buckets[b] = r;
      owner->records = r;
      g_wcpt_record_count++;
    }
  }
  pthread_mutex_unlock(&g_wcpt_lock);
  if (handle == WCPT_INVALID_HANDLE) /* table full or memory refused */
    wasm_rt_trap(WASM_RT_TRAP_EXHAUSTION);
  wasm_rt_funcref_t ref = {func_type, handle, module_instance};
  return ref;
}

wasm_rt_funcref_t wasm_rt_wcpt_import_funcref(uint32_t func_type,
                                              wasm_rt_function_ptr_t func,
                                              void* module_instance) {
  /* Lock-free for known pairs; no registry record: native handles are never
   * freed, and there is one per (function, type), so none leak. */
  wcpt_handle handle = wcpt_native_handle_typed(
      (uintptr_t)func, WASM_RT_WCPT_SIGNATURE(func_type));
  if (handle == WCPT_INVALID_HANDLE)
    wasm_rt_trap(WASM_RT_TRAP_EXHAUSTION);
  wasm_rt_funcref_t ref = {func_type, handle, module_instance};
  return ref;
}

size_t wasm_rt_wcpt_owned_handles(void) {
  pthread_mutex_lock(&g_wcpt_lock);
  size_t n = g_wcpt_record_count;
  pthread_mutex_unlock(&g_wcpt_lock);
  return n;
}
