#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N 64
#define NT 3
/* a project macro that frees: the runtime's interposed free() routes it, no edit needed */
#define RELEASE(p) do { free(p); (p) = NULL; } while (0)
/* a project macro that allocates and jumps on failure (as HAProxy's EXTRA_COUNTERS_REGISTER): the
   allocation is renamed in the definition */
#define NEW_BUFFER(dst, size, fail) do { char *_b = calloc(1, (size)); if (!_b) goto fail; (dst) = _b; } while (0)

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static char *b_malloc, *b_calloc, *b_aligned_alloc, *b_memalign, *b_valloc, *b_pvalloc, *b_strdup, *b_strndup, *b_macro;

static void *worker(void *arg)
{
	long id = (long)arg;
	for (int i = 0; i < 100; i++) {
		pthread_mutex_lock(&mu);
		b_malloc[i % N] += id;
		b_calloc[i % N] += id;
		b_aligned_alloc[i % N] += id;
		b_memalign[i % N] += id;
		b_valloc[i % N] += id;
		b_pvalloc[i % N] += id;
		b_strdup[i % 6] ^= 0;
		b_strndup[i % 7] ^= 0;
		b_macro[i % N] += id;
		pthread_mutex_unlock(&mu);
	}
	return NULL;
}

static void show(const char *name, char *p, size_t align, size_t want)
{
	long sum = 0;
	for (size_t i = 0; i < want && i < N; i++)
		sum += p[i];
	printf("%s: aligned=%d usable=%d sum=%ld text=%.*s\n", name, (uintptr_t)p % align == 0,
	       malloc_usable_size(p) >= want, sum, (int)strnlen(p, 32), p);
	fprintf(stderr, "%s arena=%d\n", name, (int)(((uintptr_t)p >> 40) == 0x6f));
}

int main(void)
{
	pthread_t t[NT];
	b_malloc = malloc(N);
	memset(b_malloc, 0, N);
	b_calloc = calloc(N, 1);
	b_aligned_alloc = aligned_alloc(256, 4 * N);
	memset(b_aligned_alloc, 0, 4 * N);
	b_memalign = memalign(512, N);
	memset(b_memalign, 0, N);
	b_valloc = valloc(N);
	memset(b_valloc, 0, N);
	b_pvalloc = pvalloc(N);
	memset(b_pvalloc, 0, N);
	b_strdup = strdup("strdup");
	b_strndup = strndup("strndup-and-more", 7);
	NEW_BUFFER(b_macro, N, failed);
	for (long i = 0; i < NT; i++)
		pthread_create(&t[i], NULL, worker, (void *)i);
	for (int i = 0; i < NT; i++)
		pthread_join(t[i], NULL);
	show("malloc", b_malloc, 16, N);
	show("calloc", b_calloc, 16, N);
	show("aligned_alloc", b_aligned_alloc, 256, 4 * N);
	show("memalign", b_memalign, 512, N);
	show("valloc", b_valloc, 4096, N);
	show("pvalloc", b_pvalloc, 4096, 4096);
	show("strdup", b_strdup, 1, 7);
	show("strndup", b_strndup, 1, 8);
	show("macro", b_macro, 16, N);
	/* interposed realloc and reallocarray keep the contents of an arena block */
	b_malloc = realloc(b_malloc, 8192);
	b_calloc = reallocarray(b_calloc, 2, 4096);
	show("realloc", b_malloc, 16, N);
	show("reallocarray", b_calloc, 16, N);
	RELEASE(b_malloc);
	RELEASE(b_calloc);
	RELEASE(b_aligned_alloc);
	RELEASE(b_memalign);
	RELEASE(b_valloc);
	RELEASE(b_pvalloc);
	RELEASE(b_strdup);
	RELEASE(b_strndup);
	RELEASE(b_macro);
	return 0;
failed:
	return 1;
}
