/*
 * backoff.c — exponential backoff with full jitter (see backoff.h).
 * Full jitter spreads retries of many failed messages over the whole window,
 * so a downstream outage does not come back as a synchronised burst.
 */
#include "backoff.h"

uint64_t backoff_cap_ms(uint64_t base_ms, uint64_t max_ms, uint32_t attempt)
{
    if (attempt == 0)
        attempt = 1;
    uint64_t cap = base_ms;
    for (uint32_t i = 1; i < attempt && cap < max_ms; i++)
        cap = cap > UINT64_MAX / 2 ? UINT64_MAX : cap * 2;
    return cap < max_ms ? cap : max_ms;
}

uint64_t backoff_delay_ms(uint64_t base_ms, uint64_t max_ms, uint32_t attempt, uint64_t random)
{
    uint64_t cap = backoff_cap_ms(base_ms, max_ms, attempt);
    if (cap == UINT64_MAX)
        return random;
    return random % (cap + 1);
}
