/* Argument parsing and pcap writing shared by the logger executables. */
#ifndef FTMB_TOOL_UTIL_H
#define FTMB_TOOL_UTIL_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Parse an unsigned integer in [min, max]; on failure print one line naming the option. */
static inline int _ftmb_parse_u64(const char *tool, const char *opt, const char *s, uint64_t min, uint64_t max,
                                  uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || end == s || *end || s[0] == '-' || v < min || v > max) {
        fprintf(stderr, "%s: %s %s: expected an integer from %llu to %llu\n", tool, opt, s,
                (unsigned long long)min, (unsigned long long)max);
        return -1;
    }
    *out = v;
    return 0;
}

static inline int _ftmb_parse_pow2(const char *tool, const char *opt, const char *s, uint64_t min, uint64_t max,
                                   uint64_t *out)
{
    if (_ftmb_parse_u64(tool, opt, s, min, max, out))
        return -1;
    if (*out & (*out - 1)) {
        fprintf(stderr, "%s: %s %s: expected a power of two\n", tool, opt, s);
        return -1;
    }
    return 0;
}

/* Minimal pcap writer (microsecond timestamps), so the output side needs no libpcap. */
static inline FILE *_ftmb_pcap_create(const char *path, uint32_t linktype)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return NULL;
    struct {
        uint32_t magic;
        uint16_t major, minor;
        int32_t thiszone;
        uint32_t sigfigs, snaplen, linktype;
    } h = {0xa1b2c3d4u, 2, 4, 0, 0, 65535, linktype};
    if (fwrite(&h, sizeof h, 1, f) != 1 || fflush(f) != 0) {
        fclose(f);
        return NULL;
    }
    return f;
}

static inline int _ftmb_pcap_write(FILE *f, uint64_t time_ns, const void *data, uint32_t len)
{
    struct {
        uint32_t sec, usec, caplen, len;
    } r = {(uint32_t)(time_ns / 1000000000ull), (uint32_t)(time_ns % 1000000000ull / 1000), len, len};
    return (fwrite(&r, sizeof r, 1, f) == 1 && fwrite(data, 1, len, f) == len) ? 0 : -1;
}

#endif /* FTMB_TOOL_UTIL_H */
