/*
 * backoff.h — retry delays: min(backoff_max, backoff_base * 2^(n-1)) with
 * full jitter (a uniform draw from 0 to that bound). Pure: any thread.
 */
#ifndef ORDERD_BACKOFF_H
#define ORDERD_BACKOFF_H

#include <stdint.h>

/* The bound before jitter for the n-th failed attempt (n >= 1); never overflows. */
uint64_t backoff_cap_ms(uint64_t base_ms, uint64_t max_ms, uint32_t attempt);

/* The delay with full jitter; random is any uniformly random 64-bit value. */
uint64_t backoff_delay_ms(uint64_t base_ms, uint64_t max_ms, uint32_t attempt, uint64_t random);

#endif
