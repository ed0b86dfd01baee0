/*
 * fuzz_keys.c — the keys-file parser and the Authorization header (libFuzzer).
 *
 * The input is a keys file, loaded with auth_load_string(); the same bytes are
 * then presented as an Authorization header to a fixed table. Properties: no
 * crash, leak or UB; errors within their cap and each with a line no larger
 * than the input's line count; every decision is 0, 401 or 403, and 0 only
 * for the one known key.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct auth *fixed;             /* "k", all scopes, key "fuzz-key" */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (fixed == NULL) {
        char hex[AUTH_HEX_LEN + 1], text[160];
        if (auth_hash_hex("fuzz-key", 8, hex) != 0)
            abort();
        snprintf(text, sizeof(text), "k orders:write,orders:read,admin %s\n", hex);
        if (auth_load_string(text, strlen(text), &fixed, NULL) != 0 || auth_key_count(fixed) != 1)
            abort();
    }

    struct auth *a = NULL;
    struct auth_errors errs;
    memset(&errs, 0, sizeof(errs));
    int rc = auth_load_string((const char *)data, size, &a, &errs);
    unsigned lines = 1;
    for (size_t i = 0; i < size; i++)
        lines += data[i] == '\n';
    if (errs.count > AUTH_ERRORS_MAX)
        abort();
    for (size_t i = 0; i < errs.count; i++)
        if (errs.items[i].line > lines || memchr(errs.items[i].message, '\0',
                                                 sizeof(errs.items[i].message)) == NULL)
            abort();
    if ((rc == 0) != (a != NULL) || (rc == 0 && errs.count != 0) || (rc != 0 && errs.count == 0))
        abort();
    if (a != NULL) {
        if (auth_key_count(a) > AUTH_KEYS_MAX)
            abort();
        auth_free(a);
    }

    char *header = malloc(size + 1);
    if (header == NULL)
        return 0;
    memcpy(header, data, size);
    header[size] = '\0';
    char client[64];
    for (unsigned scope = HTTP_SCOPE_NONE; scope <= HTTP_SCOPE_ADMIN; scope++) {
        unsigned code = auth_http_authorize(fixed, header, (enum http_scope)scope, client,
                                            sizeof(client));
        int known = strlen(header) == 15 && strncasecmp(header, "Bearer fuzz-key", 7) == 0 &&
                    strcmp(header + 7, "fuzz-key") == 0;
        if (code != 0 && code != 401 && code != 403)
            abort();
        if ((code == 0) != known)
            abort();
    }
    free(header);
    return 0;
}
