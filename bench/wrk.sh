# shellcheck shell=bash
# bench/wrk.sh — what bench/run.sh and tests/pg/bench.sh share about wrk's output.

# to_ms VALUE — wrk prints 512.00us / 4.06ms / 1.20s; prints milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); printf "%.2f", v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.2f", v }
        else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.2f", v * 1000 }
        else printf "%s", v }'
}
