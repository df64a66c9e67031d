// SO_ORIGINAL_DST for Node: after an iptables REDIRECT, the accepted socket's local
// address is the proxy's own port; the address the app really dialled is kept by
// conntrack and read back with getsockopt(SOL_IP, SO_ORIGINAL_DST) (IPv4) or
// getsockopt(SOL_IPV6, IP6T_SO_ORIGINAL_DST) (IPv6). Node has no API for it.
// Built against Node-API (ABI-stable), so one binary serves every Node version.
#include <node_api.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80 /* linux/netfilter_ipv4.h */
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80 /* linux/netfilter_ipv6/ip6_tables.h */
#endif

static napi_value make_result(napi_env env, const char *addr, int port, int family) {
  napi_value obj, a, p, f;
  napi_create_object(env, &obj);
  napi_create_string_utf8(env, addr, NAPI_AUTO_LENGTH, &a);
  napi_create_int32(env, port, &p);
  napi_create_int32(env, family, &f);
  napi_set_named_property(env, obj, "address", a);
  napi_set_named_property(env, obj, "port", p);
  napi_set_named_property(env, obj, "family", f);
  return obj;
}

// originalDst(fd: number): { address, port, family } | null
// null means the socket carries no NAT record (it was not redirected).
static napi_value original_dst(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_value nul;
  int32_t fd;
  napi_get_null(env, &nul);
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) {
    napi_throw_type_error(env, "ERR_INVALID_FD", "originalDst expects a file descriptor");
    return NULL;
  }
  char buf[INET6_ADDRSTRLEN];
  struct sockaddr_in v4;
  socklen_t len4 = sizeof(v4);
  memset(&v4, 0, sizeof(v4));
  if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &v4, &len4) == 0 && v4.sin_family == AF_INET) {
    inet_ntop(AF_INET, &v4.sin_addr, buf, sizeof(buf));
    return make_result(env, buf, ntohs(v4.sin_port), 4);
  }
  struct sockaddr_in6 v6;
  socklen_t len6 = sizeof(v6);
  memset(&v6, 0, sizeof(v6));
  if (getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &v6, &len6) == 0 && v6.sin6_family == AF_INET6) {
    inet_ntop(AF_INET6, &v6.sin6_addr, buf, sizeof(buf));
    return make_result(env, buf, ntohs(v6.sin6_port), 6);
  }
  return nul;
}

// mallocTrim(done?: (released: boolean) => void): undefined -- glibc's malloc_trim(0) on a
// libuv thread-pool thread: give the free pages inside every malloc arena back to the
// kernel. glibc returns only the top of an arena by itself; what V8's helper threads
// (compiler zones, GC tasks) freed in the middle of theirs stays resident: ~13 MB of a
// sidecar's RSS after load, in arenas whose in-use bytes are under 1 MB (malloc_stats).
// The walk over every arena's free chunks took 20-70 ms on the shared test VM, so it runs
// off the event loop (malloc_trim takes each arena's lock in turn: a thread that
// allocates from the arena being trimmed waits for it). cli/heap-flags.ts calls it.
// Not glibc (musl): released is false, nothing done.
typedef struct {
  napi_async_work work;
  napi_ref done;
  int released;
} trim_job;

static void trim_execute(napi_env env, void *data) {
  trim_job *job = (trim_job *)data;
  (void)env;
#ifdef __GLIBC__
  job->released = malloc_trim(0) == 1;
#else
  job->released = 0;
#endif
}

static void trim_complete(napi_env env, napi_status status, void *data) {
  trim_job *job = (trim_job *)data;
  if (job->done != NULL) {
    napi_value cb, global, arg;
    if (napi_get_reference_value(env, job->done, &cb) == napi_ok && cb != NULL) {
      napi_get_global(env, &global);
      napi_get_boolean(env, status == napi_ok && job->released, &arg);
      napi_call_function(env, global, cb, 1, &arg, NULL);
    }
    napi_delete_reference(env, job->done);
  }
  napi_delete_async_work(env, job->work);
  free(job);
}

static napi_value malloc_trim_fn(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], name, undef;
  napi_valuetype t = napi_undefined;
  napi_get_undefined(env, &undef);
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  trim_job *job = calloc(1, sizeof(trim_job));
  if (job == NULL) return undef;
  if (argc >= 1) napi_typeof(env, argv[0], &t);
  if (t == napi_function) napi_create_reference(env, argv[0], 1, &job->done);
  napi_create_string_utf8(env, "wren:malloc_trim", NAPI_AUTO_LENGTH, &name);
  if (napi_create_async_work(env, NULL, name, trim_execute, trim_complete, job, &job->work) != napi_ok ||
      napi_queue_async_work(env, job->work) != napi_ok) {
    if (job->done != NULL) napi_delete_reference(env, job->done);
    free(job);
  }
  return undef;
}

NAPI_MODULE_INIT(/* napi_env env, napi_value exports */) {
  napi_value fn, trim;
  napi_create_function(env, "originalDst", NAPI_AUTO_LENGTH, original_dst, NULL, &fn);
  napi_set_named_property(env, exports, "originalDst", fn);
  napi_create_function(env, "mallocTrim", NAPI_AUTO_LENGTH, malloc_trim_fn, NULL, &trim);
  napi_set_named_property(env, exports, "mallocTrim", trim);
  return exports;
}
