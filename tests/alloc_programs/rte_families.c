#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <rte_eal.h>
#include <rte_lcore.h>
#include <rte_malloc.h>

#define N 64
#define NT 3
#define RELEASE(p) do { rte_free(p); (p) = NULL; } while (0)

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static char *b_malloc, *b_zmalloc, *b_calloc, *b_malloc_socket, *b_zmalloc_socket, *b_calloc_socket;

static void *worker(void *arg)
{
	long id = (long)arg;
	for (int i = 0; i < 100; i++) {
		pthread_mutex_lock(&mu);
		b_malloc[i % N] += id;
		b_zmalloc[i % N] += id;
		b_calloc[i % N] += id;
		b_malloc_socket[i % N] += id;
		b_zmalloc_socket[i % N] += id;
		b_calloc_socket[i % N] += id;
		pthread_mutex_unlock(&mu);
	}
	return NULL;
}

static char *on_socket(int socket)
{
	return rte_zmalloc_socket("zs", N, 256, socket);
}

static void show(const char *name, char *p, size_t align)
{
	long sum = 0;
	for (int i = 0; p && i < N; i++)
		sum += p[i];
	printf("%s: null=%d aligned=%d sum=%ld\n", name, p == NULL, (uintptr_t)p % align == 0, sum);
	fprintf(stderr, "%s arena=%d\n", name, (int)(((uintptr_t)p >> 40) == 0x6f));
}

int main(int argc, char **argv)
{
	pthread_t t[NT];
	if (rte_eal_init(argc, argv) < 0)
		return 1;
	int socket = (int)rte_socket_id();
	b_malloc = rte_malloc("m", N, 0);
	memset(b_malloc, 0, N);
	b_zmalloc = rte_zmalloc("z", N, 128);
	b_calloc = rte_calloc("c", N, 1, 0);
	b_malloc_socket = rte_malloc_socket("ms", N, 1024, socket);
	memset(b_malloc_socket, 0, N);
	/* a socket that is no NUMA node of this machine: DPDK fails the allocation */
	b_zmalloc_socket = on_socket(RTE_MAX_NUMA_NODES - 1);
	show("zmalloc_socket_bad", b_zmalloc_socket, 1);
	b_zmalloc_socket = on_socket(socket);
	b_calloc_socket = rte_calloc_socket("cs", N, 1, 64, SOCKET_ID_ANY);
	for (long i = 0; i < NT; i++)
		pthread_create(&t[i], NULL, worker, (void *)i);
	for (int i = 0; i < NT; i++)
		pthread_join(t[i], NULL);
	show("malloc", b_malloc, 64);
	show("zmalloc", b_zmalloc, 128);
	show("calloc", b_calloc, 64);
	show("malloc_socket", b_malloc_socket, 1024);
	show("zmalloc_socket", b_zmalloc_socket, 256);
	show("calloc_socket", b_calloc_socket, 64);
	/* moving an arena block keeps its contents, its alignment and its socket */
	b_malloc = rte_realloc(b_malloc, 8192, 2048);
	show("realloc", b_malloc, 2048);
	b_zmalloc = rte_realloc_socket(b_zmalloc, 8192, 4096, socket);
	show("realloc_socket", b_zmalloc, 4096);
	/* DPDK's own memory still goes to DPDK */
	char *own = rte_malloc("own", 16, 0);
	own = rte_realloc(own, 64, 0);
	printf("own: null=%d\n", own == NULL);
	rte_free(own);
	RELEASE(b_malloc);
	RELEASE(b_zmalloc);
	rte_free(b_calloc);
	rte_free(b_malloc_socket);
	rte_free(b_zmalloc_socket);
	rte_free(b_calloc_socket);
	rte_eal_cleanup();
	return 0;
}
