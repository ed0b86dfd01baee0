/*
 * timeouts.h — the time each unit test case may take, set explicitly on every
 * TCase (check's own default is 4 s, which a sanitizer build on 2 busy cores
 * overruns). Sized for the slowest flavour `make test` runs: TSan on 2 cores
 * with the rest of the machine busy. A case that needs more is too slow for
 * a unit test, not a reason to raise these.
 */
#ifndef ORDERD_TEST_TIMEOUTS_H
#define ORDERD_TEST_TIMEOUTS_H

/* pure logic: parsing, validation, rendering; no threads, little I/O */
#define UNIT_TIMEOUT_LOGIC 30
/* real files, child processes or a few threads */
#define UNIT_TIMEOUT_IO 60
/* many threads or a real database under load */
#define UNIT_TIMEOUT_THREADED 120

#endif
