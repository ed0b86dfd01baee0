/*
 * store_pg_export.c — export for the PostgreSQL backend: every matching
 * order from one snapshot, streamed (store_export). Being written (issue 20).
 */
#include "store_pg_int.h"

int pgs_export_orders(struct store *base, const struct store_export_filter *f, store_export_fn fn,
                      void *arg)
{
    (void)base;
    (void)f;
    (void)fn;
    (void)arg;
    return STORE_EINTERNAL;
}
