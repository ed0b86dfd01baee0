/*
 * store_pg_retention.c — retention for the PostgreSQL backend: deleting
 * expired orders in short batches (store_purge_expired). Being written
 * (issue 20).
 */
#include "store_pg_int.h"

int pgs_purge_expired(struct store *base, enum store_retention_kind kind, int64_t cutoff_ms,
                      size_t max, uint64_t *deleted)
{
    (void)base;
    (void)kind;
    (void)cutoff_ms;
    (void)max;
    *deleted = 0;
    return STORE_EINTERNAL;
}
