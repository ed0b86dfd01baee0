#!/usr/bin/env bash
# test_security.sh — what issue 7 promises at the network edge: TLS 1.2+ only,
# API keys with scopes (401/403, reload, never logged), monitoring behind a
# key when [auth] protect_status is set (issue 17), rate limits with
# Retry-After (live on SIGHUP), connection caps against idle and crawling
# clients, hostile bodies and headers, and the database file mode.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

hash_key() {
    printf '%s' "$1" | "$TEST_ORDERD_BIN" hash-key
}

# write_keys FILE — three keys: writer, reader, admin (secrets ws-1, rs-1, as-1).
write_keys() {
    {
        echo "# test keys"
        echo "writer orders:write,orders:read $(hash_key ws-1)"
        echo "reader orders:read $(hash_key rs-1)"
        echo "ops admin $(hash_key as-1)"
    } >"$1"
    chmod 600 "$1"
}

bearer() {
    printf 'Authorization: Bearer %s' "$1"
}

# ---- TLS -------------------------------------------------------------------

make_cert() {
    command -v openssl >/dev/null || skip "openssl is not installed"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=127.0.0.1" \
        -addext "subjectAltName=IP:127.0.0.1" -keyout "$T/key.pem" -out "$T/cert.pem" \
        >/dev/null 2>&1 || fail "openssl could not make a test certificate"
}

test_tls_serves_https_and_refuses_old_versions_and_plain_http() {
    make_cert
    start_orderd "server.tls_cert=$T/cert.pem" "server.tls_key=$T/key.pem"
    BASE_URL=https://127.0.0.1:$D_PORT
    http GET /healthz --cacert "$T/cert.pem"
    assert_status 200
    http GET /healthz --cacert "$T/cert.pem" --tlsv1.3
    assert_status 200
    http GET /healthz --cacert "$T/cert.pem" --tlsv1.2 --tls-max 1.2
    assert_status 200
    http GET /healthz --cacert "$T/cert.pem" --tlsv1.1 --tls-max 1.1
    assert_ne "$STATUS" 200 "a TLS 1.1 handshake"
    BASE_URL=http://127.0.0.1:$D_PORT
    http GET /healthz
    assert_ne "$STATUS" 200 "plain HTTP on the TLS port"
    BASE_URL=https://127.0.0.1:$D_PORT
    post_order CUST-TLS --cacert "$T/cert.pem"
    stop_orderd
}

test_tls_with_a_missing_key_file_exits_2() {
    make_cert
    write_config "$T/c.conf" "$T" "server.tls_cert=$T/cert.pem" "server.tls_key=$T/none.pem"
    local rc=0
    timeout 20 "$TEST_ORDERD_BIN" -c "$T/c.conf" 2>"$T/err" || rc=$?
    assert_eq "$rc" 2 "exit status with an unreadable TLS key"
    assert_contains "$(cat "$T/err")" "none.pem" "the error names the file"
    [[ ! -e $T/orderd.db ]] || fail "the failed start created the database"
}

# ---- API keys -----------------------------------------------------------------

test_keys_and_scopes() {
    write_keys "$T/keys"
    start_orderd "auth.keys_file=$T/keys"
    post_json "$(order_body)"
    assert_status 401
    assert_match "$(header WWW-Authenticate)" '^Bearer' "WWW-Authenticate of a 401"
    assert_eq "$(header Content-Type)" application/problem+json "content type of the 401"
    post_json "$(order_body)" -H "$(bearer wrong-secret)"
    assert_status 401
    post_json "$(order_body)" -H "Authorization: Basic d3MtMTo="
    assert_status 401
    post_json "$(order_body)" -H "$(bearer rs-1)"
    assert_status 403
    post_order CUST-1 -H "$(bearer ws-1)"
    http GET "/orders/$ORDER_ID" -H "$(bearer rs-1)"
    assert_status 200
    http GET "/orders/$ORDER_ID"
    assert_status 401
    http GET /admin/dlq -H "$(bearer ws-1)"
    assert_status 403
    http GET /admin/dlq -H "$(bearer as-1)"
    assert_status 200
    local path
    for path in /healthz /readyz /metrics /status.json; do
        http GET "$path"
        assert_status 200
    done
    assert_not_contains "$(cat "$D_LOG")" "ws-1" "the daemon's log (a secret)"
    stop_orderd
}

# [auth] protect_status = true: /metrics and /status.json need a known key (of
# any scope); the probes stay open, and so does the status page itself (static:
# its data comes from /status.json, and says so when that answers 401).
test_protect_status_puts_metrics_and_status_json_behind_a_key() {
    write_keys "$T/keys"
    start_orderd "auth.keys_file=$T/keys" auth.protect_status=true
    local path key
    for path in /healthz /readyz /; do
        http GET "$path"
        assert_status 200
    done
    assert_contains "$BODY" "status.json needs an API key" "the page's word for a 401"
    for path in /metrics /status.json; do
        http GET "$path"
        assert_status 401
        assert_match "$(header WWW-Authenticate)" '^Bearer' "WWW-Authenticate of $path"
        http GET "$path" -H "$(bearer wrong-secret)"
        assert_status 401
        for key in rs-1 ws-1 as-1; do
            http GET "$path" -H "$(bearer "$key")"
            assert_status 200
        done
    done
    assert_contains "$BODY" '"received":' "the status.json read with a key"
    stop_orderd
}

test_keys_reload_on_sighup_and_a_broken_file_keeps_the_old_ones() {
    write_keys "$T/keys"
    start_orderd "auth.keys_file=$T/keys"
    post_json "$(order_body)" -H "$(bearer new-1)"
    assert_status 401
    echo "newcomer orders:write $(hash_key new-1)" >>"$T/keys"
    kill -HUP "$D_PID"
    wait_until 10 "the new key works" \
        bash -c "curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
            -H 'Authorization: Bearer new-1' --data-binary '$(order_body)' $BASE_URL/orders | grep -qx 202"
    echo "broken line without a hash" >>"$T/keys"
    kill -HUP "$D_PID"
    wait_until 10 "the reload error in the log" grep -q "keeping the running keys" "$D_LOG"
    post_order CUST-2 -H "$(bearer new-1)"
    stop_orderd
}

# ---- rate limits ---------------------------------------------------------------

test_rate_limit_429_with_retry_after_and_live_reload() {
    start_orderd limits.rate=1 limits.burst=2
    local i
    for i in 1 2; do
        post_json "$(order_body)"
        assert_status 202
    done
    post_json "$(order_body)"
    assert_status 429
    assert_match "$(header Retry-After)" '^[1-9][0-9]*$' "Retry-After of a 429"
    sed -i 's/^rate = 1$/rate = 0/' "$D_CONF"
    kill -HUP "$D_PID"
    wait_until 10 "the reload" grep -q "reload: applied" "$D_LOG"
    for i in 1 2 3 4 5; do
        post_json "$(order_body)"
        assert_status 202
    done
    stop_orderd
}

# ---- connection caps -------------------------------------------------------------

# Idle and crawling connections from one address fill its cap; a real client
# from another address is served at once.
test_idle_and_crawling_connections_do_not_delay_a_real_client() {
    start_orderd server.max_connections_per_ip=20 server.max_connections=200
    local -a fds=()
    local i fd
    for i in $(seq 1 60); do
        if exec {fd}<>"/dev/tcp/127.0.0.1/$D_PORT" 2>/dev/null; then
            fds+=("$fd")
            # half of them crawl: a partial request, never finished (the
            # server may already have closed those over the cap: no SIGPIPE)
            if ((i % 2)); then
                (trap '' PIPE; printf 'POST /orders HTTP/1.1\r\nHost: x\r\n' >&"$fd") 2>/dev/null || true
            fi
        fi
    done
    ((${#fds[@]} > 0)) || fail "could not open any connection"
    local t0=$SECONDS
    http POST /orders "${JSON_CT[@]}" --data-binary "$(order_body)" --interface 127.0.0.2
    assert_status 202
    ((SECONDS - t0 <= 2)) || fail "the real client waited $((SECONDS - t0)) s"
    for fd in "${fds[@]}"; do
        exec {fd}>&- || true
    done
    stop_orderd
}

# A client that crawls through its headers (a byte every 0.3 s keeps MHD's own
# idle timer happy) is cut off once request_timeout has passed since it
# connected; a client that sends its request promptly on the same settings is
# served.
test_crawling_headers_are_cut_off_at_request_timeout() {
    start_orderd server.request_timeout=2s
    local fd byte rc closed=0 t0=$SECONDS
    exec {fd}<>"/dev/tcp/127.0.0.1/$D_PORT"
    for byte in $(printf 'GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa' | od -An -tx1); do
        # shellcheck disable=SC2059  # the byte is the format: \xHH
        (trap '' PIPE; printf "\\x$byte" >&"$fd") 2>/dev/null || { closed=1; break; }
        rc=0
        read -r -t 0.3 -u "$fd" _ || rc=$?
        if ((rc == 1)); then
            closed=1
            break
        fi
        ((SECONDS - t0 < 15)) || break
    done
    exec {fd}>&- || true
    ((closed)) || fail "a crawling client kept its connection for $((SECONDS - t0)) s"
    ((SECONDS - t0 <= 6)) || fail "cut off only after $((SECONDS - t0)) s (request_timeout 2 s)"
    http GET /healthz
    assert_status 200
    stop_orderd
}

# ---- hostile input -----------------------------------------------------------------

test_hostile_bodies_get_400_and_the_daemon_stays_up() {
    start_orderd
    local deep
    deep=$(printf '%*s' 20000 '' | tr ' ' '[')
    post_json "$deep"
    assert_status 400
    post_json '{"customer_id":"A","customer_id":"B","items":[{"item":"x","quantity":1}]}'
    assert_status 400
    post_json $'{"customer_id":"\xff\xfe","items":[{"item":"x","quantity":1}]}'
    assert_status 400
    post_json '{"customer_id":"A\u0000B","items":[{"item":"x","quantity":1}]}'
    assert_status 400
    post_json '{"customer_id":"A","items":[{"item":"x","quantity":123456789012345678901234567890}]}'
    assert_status 400
    post_json '{"customer_id":"A","items":[{"item":"x","quantity":1e400}]}'
    assert_status 400
    post_json '{"customer_id":"A","items":[{"item":"x","quantity":1}'
    assert_status 400
    # A body shorter than its Content-Length, then the client goes away.
    exec {fd}<>"/dev/tcp/127.0.0.1/$D_PORT"
    (trap '' PIPE; printf 'POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"cust' >&"$fd") 2>/dev/null || true
    exec {fd}>&-
    # Odd headers: a 64 KiB header, a header without a colon, a NUL in a header.
    http GET /healthz -H "X-Big: $(printf '%*s' 65536 '' | tr ' ' 'a')"
    assert_ne "$STATUS" 200 "a 64 KiB header"
    exec {fd}<>"/dev/tcp/127.0.0.1/$D_PORT"
    (trap '' PIPE; printf 'GET /healthz HTTP/1.1\r\nHost: x\r\nNoColonHere\r\nX-Nul: a\0b\r\n\r\n' >&"$fd") 2>/dev/null || true
    exec {fd}>&-
    http GET /healthz
    assert_status 200
    post_order CUST-AFTER
    stop_orderd
}

# HTTP_CONNECTION_MEMORY (16 KiB) bounds the headers: 14 KiB of them still make
# an order; 20 KiB are refused with 431 and the connection's memory is not grown.
test_headers_up_to_14_KiB_pass_and_20_KiB_get_431() {
    start_orderd
    post_order CUST-HDR -H "X-Pad: $(printf '%*s' 14336 '' | tr ' ' 'a')"
    http GET /healthz -H "X-Pad: $(printf '%*s' 20480 '' | tr ' ' 'a')"
    assert_status 431
    http GET /healthz
    assert_status 200
    stop_orderd
}

test_database_file_is_private() {
    start_orderd
    post_order
    assert_eq "$(stat -c %a "$D_DB")" 600 "mode of the database file"
    stop_orderd
}

test_database_directory_is_created_0750() {
    start_orderd "storage.path=$T/new/sub/orderd.db"
    assert_eq "$(stat -c %a "$T/new/sub")" 750 "mode of a directory orderd created"
    stop_orderd
}

run_tests
