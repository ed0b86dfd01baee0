/*
 * fuzz_config.c — config_load_string() on arbitrary text (libFuzzer), and the
 * duration and size parsers on its first line.
 *
 * Properties: no crash, leak or UB; the error count stays within its cap; a
 * config that loads without error has its cross-key rules holding.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';

    struct config cfg;
    struct config_errors errs;
    memset(&errs, 0, sizeof(errs));
    int rc = config_load_string(text, NULL, &cfg, &errs);
    if (errs.count > CONFIG_ERRORS_MAX)
        abort();
    if (rc == 0) {
        if (errs.count != 0)
            abort();
        if (cfg.rate > 0 && cfg.burst < 1)
            abort();
        if ((cfg.tls_cert == NULL) != (cfg.tls_key == NULL))
            abort();
    }
    config_free(&cfg);

    char *nl = strchr(text, '\n');
    if (nl != NULL)
        *nl = '\0';
    uint64_t v;
    (void)config_parse_duration_ms(text, &v);
    (void)config_parse_size(text, &v);
    free(text);
    return 0;
}
