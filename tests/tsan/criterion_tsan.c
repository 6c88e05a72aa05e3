/*
 * Linked into every Criterion test executable of a ThreadSanitizer tree only (tests/meson.build).
 *
 * Criterion 2.4 cannot start under TSan (Snaipe/Criterion issue #274: "Could not initialize
 * inheritable arena"): its arena (boxfort) is mapped with MAP_FIXED at a random 16 MB-aligned
 * address between 0x200000000000 and 0x600000000000 chosen with rand_r(), after checking with
 * mincore() that the range is free, and gives up after 10 tries. TSan reserves almost all of that
 * span (shadow, metadata and the protected gaps between its application ranges), so every try
 * fails, except the rare pick inside TSan's application range 0x550000000000-0x568000000000.
 *
 * This rand_r() (the executable's definition wins over libc's in the dynamic lookup) returns only
 * picks inside that range, where boxfort's own mincore() check still avoids anything mapped. It is
 * a fine PRNG for any other caller; no txm code calls rand_r.
 */
#include <stdlib.h>

int rand_r(unsigned int *seed)
{
    /* boxfort computes base = 0x200000000000 + (r & 0x3fffff) * 16 MB: r in [0x350000, 0x368000)
     * is 0x550000000000 .. 0x567fff000000. */
    unsigned int x = *seed ? *seed : 0x9e3779b9u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *seed = x;
    return 0x350000 + (int)(x % 0x18000u);
}
