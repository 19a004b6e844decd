/*
 * What a checkpoint's fork costs per kind of mapping: the CPU time of the clone system call (the
 * kernel's copy of the address space, whatever the machine's load), min and mean over 20 forks.
 *
 *   gcc -O2 bench/runtime/fork_cost.c -o /tmp/fork_cost
 *   /tmp/fork_cost RO WRITTEN ANON_MIB HUGE
 *     RO        read-only private file mappings (2 pages of libc each: a library's text)
 *     WRITTEN   private file mappings with a written page, then a page made read-only (a library's
 *               relro and data: two mappings, each with anonymous pages)
 *     ANON_MIB  MiB of touched anonymous memory (heap, arena), MADV_HUGEPAGE when HUGE is 1
 *
 * A DPDK process has about 1000 mappings (EAL loads every driver library): run it with the counts
 * of /proc/PID/maps to see what its fork is made of (bench/RESULTS.md).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static unsigned long long cpu_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (unsigned long long)t.tv_sec * 1000000000ull + (unsigned long long)t.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: fork_cost RO WRITTEN ANON_MIB HUGE\n");
        return 1;
    }
    int ro = atoi(argv[1]), written = atoi(argv[2]), huge = atoi(argv[4]);
    size_t anon = (size_t)atol(argv[3]) << 20;
    int fd = open("/usr/lib/x86_64-linux-gnu/libc.so.6", O_RDONLY);
    if (fd < 0) {
        perror("libc.so.6");
        return 1;
    }
    for (int i = 0; i < ro; i++)
        if (mmap(NULL, 8192, PROT_READ, MAP_PRIVATE, fd, 0) == MAP_FAILED)
            return 1;
    for (int i = 0; i < written; i++) {
        char *p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED)
            return 1;
        p[0] = p[4096] = 1;
        mprotect(p, 4096, PROT_READ);
    }
    if (anon) {
        size_t two = 2u << 20;
        char *a = mmap(NULL, anon + two, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (a == MAP_FAILED)
            return 1;
        a = (char *)(((unsigned long)a + two - 1) & ~(two - 1));
        if (huge)
            madvise(a, anon, MADV_HUGEPAGE);
        memset(a, 1, anon);
    }
    unsigned long long best = ~0ull, sum = 0;
    for (int r = 0; r < 20; r++) {
        unsigned long long c0 = cpu_ns();
        pid_t p = (pid_t)syscall(SYS_clone, SIGCHLD, 0, NULL, NULL, 0);
        if (p == 0)
            _exit(0);
        unsigned long long c1 = cpu_ns();
        waitpid(p, NULL, 0);
        best = c1 - c0 < best ? c1 - c0 : best;
        sum += c1 - c0;
    }
    printf("ro %d written %d anon %zu MiB huge %d: fork CPU us min %.0f mean %.0f\n", ro, written, anon >> 20, huge,
           (double)best / 1e3, (double)sum / 20 / 1e3);
    return 0;
}
