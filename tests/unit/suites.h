/*
 * suites.h — the one list of unit-test suites (as libuv's test-list.h).
 * Each tests/unit/test_<module>.c defines Suite *suite_<module>(void).
 * Add a line here when you add a file.
 */
SUITE(config)
SUITE(log)
SUITE(strbuf)
SUITE(ids)
SUITE(trace)
SUITE(tracing)
SUITE(order)
SUITE(metrics)
SUITE(http)
SUITE(store)
SUITE(store_io)
SUITE(wal_checkpointer)
SUITE(committer)
SUITE(worker)
SUITE(backoff)
SUITE(auth)
SUITE(cli)
SUITE(ratelimit)
SUITE(fulfilment)
SUITE(fulfilment_http)
SUITE(webhook)
SUITE(ctl)
SUITE(retention)
SUITE(export)
