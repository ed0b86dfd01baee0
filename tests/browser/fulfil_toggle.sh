#!/bin/sh
# tests/browser/fulfil_toggle.sh MARKER — a fulfilment_command for the
# browser tests: fails while the file MARKER exists, with the file's contents
# as its error (stderr, which orderd keeps as the order's last_error), and
# succeeds once MARKER is removed. Reads the order from stdin either way.
cat >/dev/null
if [ -e "$1" ]; then
    cat "$1" >&2
    exit 1
fi
exit 0
