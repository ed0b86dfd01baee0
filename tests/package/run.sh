#!/usr/bin/env bash
# tests/package/run.sh — the Debian package (issue 23), on this machine:
#
#   version-one-place   VERSION, debian/changelog and CHANGELOG.md agree
#   ci-workflow         .github/workflows/ci.yml parses and calls .ci/run and
#                       make deb as it should (ci_workflow.py); a broken copy
#                       is refused
#   deb-lintian         build-aux/build-deb.sh builds the .deb of this tree;
#                       lintian --fail-on error,warning; its files, conffile,
#                       dependencies and version
#   install-remove-purge
#                       apt-get install of the .deb: files where Debian wants
#                       them, the orderd user, the daemon started from the
#                       installed config as that user takes an order; dpkg -r
#                       keeps config and data (a reinstall finds the order);
#                       dpkg --purge removes both
#   upgrade-from-previous-release
#                       the previous release tag built through git worktree
#                       with this debian/, installed, orders written (completed,
#                       queued, a dead letter), the conffile edited; upgraded
#                       to this tree's package: every order is there, the
#                       schema migrated, the queued ones processed, the
#                       conffile kept; then the documented roll back (old
#                       package, restore of the pre-upgrade backup)
#
#   tests/package/run.sh [TEST...]
#
# The first two run anywhere (python3-yaml). The others need dpkg (a line
# says "skipped" without it); installing needs root and a machine with no
# orderd of its own: an orderd package, /etc/orderd (make install),
# /var/lib/orderd or /usr/bin/orderd make those tests skip, never touch it.
# Each installing test purges the package at its end, even on failure, and
# deletes the orderd user if it made it: the machine is left as it was.
# No running systemd is needed; where one runs, orderd.service is masked
# (--runtime) while the test runs, so that the package's postinst does not
# start it beside the test's daemon.
#
# Packages are built in build/package-test/ (TEST_PACKAGE_DIR) with
# DEB_BUILD_OPTIONS="nocheck parallel=2". TEST_UPGRADE_FROM=TAG picks the
# release to upgrade from (default: the newest tag v* older than VERSION
# that HEAD contains; none, as in a shallow clone, skips the test).
#
# Prints `ok NAME` / `ok NAME # skip why` / `FAIL NAME: why` per test, then
# `N passed, M failed[, K skipped]`; exits 1 on any failure.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WORK=${TEST_PACKAGE_DIR:-$ROOT/build/package-test}
TEST_LIMIT_S=300
CONF=/etc/orderd/orderd.conf
DB=/var/lib/orderd/orderd.db
VERSION=$(tr -d '[:space:]' <"$ROOT/VERSION")
ARCH=$(dpkg --print-architecture 2>/dev/null || echo amd64)
NEW_DEB=$WORK/new/orderd_$VERSION-1_$ARCH.deb
LOCK=/run/lock/orderd-package-test.lock

TESTS=(
    version-one-place
    ci-workflow
    deb-lintian
    install-remove-purge
    upgrade-from-previous-release
)

fail() {
    echo "$*"
    exit 1
}
skip() {
    echo "$*"
    exit 77
}

wait_for() {
    local seconds=$1
    shift
    local deadline=$((SECONDS + seconds))
    while ! "$@"; do
        [[ $SECONDS -lt $deadline ]] || return 1
        sleep 0.1
    done
}

log_has() { grep -qF -- "$2" "$1" 2>/dev/null; }
user_idle() { ! pgrep -u orderd >/dev/null 2>&1; }
proc_gone() { ! kill -0 "$1" 2>/dev/null; }

# ---- version and CI workflow (no dpkg needed) ---------------------------------

t_version_one_place() {
    [[ $VERSION =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || fail "VERSION is '$VERSION', not X.Y.Z"
    local top
    top=$(sed -n '1s/^orderd (\([^)]*\)).*/\1/p' "$ROOT/debian/changelog")
    [[ $top == "$VERSION-1" ]] ||
        fail "debian/changelog's first entry is '$top', VERSION wants $VERSION-1"
    grep -qE "^## \[?$VERSION\]?( |$)" "$ROOT/CHANGELOG.md" ||
        fail "CHANGELOG.md has no '## $VERSION' entry"
    # shellcheck disable=SC2016 # $(VERSION) is make's, as the Makefile writes it
    grep -q 'ORDERD_VERSION=.*\$(VERSION)' "$ROOT/Makefile" ||
        fail "the Makefile does not pass VERSION to the build as ORDERD_VERSION"
    echo "version $VERSION"
}

t_ci_workflow() {
    local wf=$ROOT/.github/workflows/ci.yml out
    command -v python3 >/dev/null || fail "python3 is not installed"
    python3 -c 'import yaml' 2>/dev/null || fail "PyYAML is not installed (Debian: python3-yaml)"
    [[ -f $wf ]] || fail ".github/workflows/ci.yml is missing"
    out=$(python3 "$HERE/ci_workflow.py" "$wf" "$ROOT" 2>&1) || { printf '%s\n' "$out"; fail "ci.yml: $out"; }
    # and the check can fail: each broken copy is refused for its reason
    local T
    T=$(mktemp -d "${TMPDIR:-/tmp}/orderd-ci.XXXXXX")
    local -a cases=(
        's/image: debian:12/image: debian:11/|debian:12 container'
        's/fetch-depth: 0/fetch-depth: 1/|shallow clone'
        's/run: make deb/run: make debs/|no such Makefile target'
        's/run: .ci\/run/run: make test/|does not run .ci\/run'
        's/^  deb:/  deb :\n\t/|ci.yml'
    )
    local c sedexpr want
    for c in "${cases[@]}"; do
        sedexpr=${c%%|*}
        want=${c#*|}
        sed "$sedexpr" "$wf" >"$T/ci.yml"
        if cmp -s "$wf" "$T/ci.yml"; then
            rm -rf "$T"
            fail "the mutation '$sedexpr' did not change ci.yml"
        fi
        if out=$(python3 "$HERE/ci_workflow.py" "$T/ci.yml" "$ROOT" 2>&1); then
            rm -rf "$T"
            fail "a ci.yml with '$sedexpr' passed the check"
        fi
        grep -q -- "$want" <<<"$out" || {
            rm -rf "$T"
            fail "'$sedexpr': wanted a complaint about '$want', got: $out"
        }
    done
    rm -rf "$T"
}

# ---- building -------------------------------------------------------------------

need_dpkg() {
    command -v dpkg >/dev/null || skip "skipped: dpkg is not installed (not a Debian system)"
    local tool
    for tool in dpkg-buildpackage dh lintian; do
        command -v "$tool" >/dev/null || fail "$tool is not installed (make deps-package)"
    done
}

# build_deb SRC OUT: the package of SRC with this tree's debian/.
build_deb() {
    DEB_BUILD_OPTIONS="nocheck parallel=2" DEBIAN_DIR=$ROOT/debian \
        timeout 600 bash "$ROOT/build-aux/build-deb.sh" "$1" "$2" >"$T/build-$(basename "$2").log" 2>&1 || {
        tail -n 15 "$T/build-$(basename "$2").log"
        return 1
    }
}

# The package of this tree, built once per run of this script.
new_deb() {
    if [[ ! -f $NEW_DEB || ! -f $WORK/new/.built-by-$RUN_ID ]]; then
        rm -rf "$WORK/new"
        build_deb "$ROOT" "$WORK/new" || fail "build-aux/build-deb.sh failed on this tree"
        touch "$WORK/new/.built-by-$RUN_ID"
    fi
    [[ -f $NEW_DEB ]] || fail "no $NEW_DEB after the build"
}

# deb_file DEB PATH: prints the file PATH (./etc/...) of the package.
deb_file() { dpkg-deb --fsys-tarfile "$1" | tar -xOf - "$2"; }

t_deb_lintian() {
    need_dpkg
    new_deb
    local out rc=0
    out=$(timeout 300 lintian --fail-on error,warning --tag-display-limit 0 "$NEW_DEB" 2>&1) || rc=$?
    out=$(grep -v 'running with root privileges is not recommended' <<<"$out" || true)
    [[ -z $out ]] || printf 'lintian: %s\n' "$out"
    [[ $rc -eq 0 ]] || fail "lintian --fail-on error,warning: exit $rc"
    [[ -z $out ]] && echo "lintian: no tags"

    local f contents
    contents=$(dpkg-deb -c "$NEW_DEB" | awk '{ print $6 }')
    for f in ./usr/bin/orderd ./lib/systemd/system/orderd.service ./etc/orderd/orderd.conf \
        ./usr/share/man/man8/orderd.8.gz ./usr/share/man/man5/orderd.conf.5.gz \
        ./usr/lib/sysusers.d/orderd.conf ./usr/lib/tmpfiles.d/orderd.conf \
        ./usr/share/doc/orderd/copyright ./usr/share/doc/orderd/changelog.Debian.gz; do
        grep -qxF -- "$f" <<<"$contents" || fail "the package has no $f"
    done
    [[ $(dpkg-deb -f "$NEW_DEB" Version) == "$VERSION-1" ]] ||
        fail "Version is $(dpkg-deb -f "$NEW_DEB" Version), want $VERSION-1"
    [[ $(dpkg-deb -I "$NEW_DEB" conffiles) == /etc/orderd/orderd.conf ]] ||
        fail "/etc/orderd/orderd.conf is not the one conffile: $(dpkg-deb -I "$NEW_DEB" conffiles)"
    local dep depends
    depends=$(dpkg-deb -f "$NEW_DEB" Depends)
    for dep in libc6 libmicrohttpd12 libsqlite3-0 libjansson4 libuv1 libinih1 libgnutls30 \
        libpq5 libcurl3-gnutls 'systemd | systemd-standalone-sysusers'; do
        grep -qF -- "$dep" <<<"$depends" || fail "Depends lacks $dep: $depends"
    done
    local unit
    unit=$(deb_file "$NEW_DEB" ./lib/systemd/system/orderd.service)
    grep -qxF 'ExecStart=/usr/bin/orderd -c /etc/orderd/orderd.conf' <<<"$unit" ||
        fail "the packaged unit does not run /usr/bin/orderd -c /etc/orderd/orderd.conf"
    # the binary says the version (it runs here: the build machine has its libraries)
    dpkg-deb -x "$NEW_DEB" "$T/x" || fail "dpkg-deb -x failed"
    [[ $("$T/x/usr/bin/orderd" --version) == "orderd $VERSION" ]] ||
        fail "the packaged orderd --version says '$("$T/x/usr/bin/orderd" --version)', want 'orderd $VERSION'"
    echo "Depends: $depends"
}

# ---- installing: the machine ------------------------------------------------------

USER_EXISTED=1
MASKED=0
INSTALLED=0
RUNUSER_PIDS=()

# Skips unless this machine can take the package and give it back as it was.
machine_ready() {
    need_dpkg
    [[ $(id -u) -eq 0 ]] || skip "skipped: installing a package needs root"
    command -v apt-get >/dev/null || skip "skipped: apt-get is not installed"
    local tool
    for tool in runuser curl jq sqlite3 git; do
        command -v "$tool" >/dev/null || fail "$tool is not installed"
    done
    mkdir -p "$(dirname "$LOCK")"
    exec 9>"$LOCK"
    flock -w 240 9 || fail "another package test holds $LOCK"
    local st
    st=$(dpkg-query -W -f='${Status}' orderd 2>/dev/null || true)
    [[ -z $st || $st == *not-installed ]] ||
        skip "skipped: an orderd package is on this machine ($st): not touching it"
    [[ ! -e /etc/orderd ]] || skip "skipped: /etc/orderd exists (make install?): not touching it"
    [[ ! -e /var/lib/orderd ]] || skip "skipped: /var/lib/orderd exists: not touching it"
    [[ ! -e /usr/bin/orderd ]] || skip "skipped: /usr/bin/orderd exists outside a package: not touching it"
    getent passwd orderd >/dev/null || USER_EXISTED=0
    if [[ -d /run/systemd/system ]]; then
        systemctl mask --runtime orderd.service >/dev/null 2>&1 && MASKED=1
    fi
    INSTALLED=1
}

# The EXIT trap of an installing test: its daemons, the package (purged),
# the user it made, the mask.
machine_restore() {
    local pid
    # a fulfilment of BLOCK-1 still waiting ends at once
    touch "$T/release" 2>/dev/null || true
    for pid in "${RUNUSER_PIDS[@]}"; do
        pkill -KILL -P "$pid" 2>/dev/null || true
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    [[ $INSTALLED -eq 1 ]] || return 0
    # userdel refuses a user that still runs a process (that fulfilment)
    wait_for 5 user_idle || true
    if dpkg-query -W orderd >/dev/null 2>&1; then
        DEBIAN_FRONTEND=noninteractive dpkg --purge orderd >/dev/null 2>&1 ||
            echo "cleanup: dpkg --purge orderd failed" >&2
    fi
    rm -rf /etc/orderd /var/lib/orderd
    if [[ $USER_EXISTED -eq 0 ]] && getent passwd orderd >/dev/null; then
        userdel orderd 2>/dev/null || echo "cleanup: userdel orderd failed" >&2
    fi
    if getent group orderd >/dev/null && [[ $USER_EXISTED -eq 0 ]]; then
        groupdel orderd 2>/dev/null || true
    fi
    [[ $MASKED -eq 0 ]] || systemctl unmask --runtime orderd.service >/dev/null 2>&1 || true
}

# apt_install [APT OPTIONS...] DEB: as an operator would, with no terminal.
apt_install() {
    DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -q --no-install-recommends \
        -o DPkg::Lock::Timeout=120 "$@" >"$T/apt.log" 2>&1 || {
        grep -v '^(Reading database' "$T/apt.log" | tail -n 15
        return 1
    }
}

pkg_status() { dpkg-query -W -f='${Status} ${Version}' orderd 2>/dev/null || echo "not-installed"; }

# daemon_start LOG [VAR=VALUE...]: orderd from the installed config as user
# orderd, as the issue says (runuser); waits until it listens. RUNUSER_PID,
# DAEMON_PID (runuser's child, which gets the signals: runuser would SIGKILL
# it 2 s after forwarding a SIGTERM), BASE.
daemon_start() {
    local log=$1
    shift
    : >"$log"
    (cd / && exec env "$@" runuser -u orderd -- orderd -c "$CONF") 2>"$log" &
    RUNUSER_PID=$!
    RUNUSER_PIDS+=("$RUNUSER_PID")
    if ! wait_for 20 log_has "$log" "listening on 127.0.0.1:"; then
        tail -n 5 "$log"
        return 1
    fi
    DAEMON_PID=$(pgrep -P "$RUNUSER_PID" -x orderd) || { echo "no orderd under runuser"; return 1; }
    BASE=http://127.0.0.1:$(grep -o 'listening on 127\.0\.0\.1:[0-9]*' "$log" | tail -n 1 | sed 's/.*://')
}

# daemon_stop: SIGTERM to orderd, which must exit 0 within 30 s.
daemon_stop() {
    local rc=0
    kill -TERM "$DAEMON_PID" || return 1
    if ! wait_for 30 proc_gone "$RUNUSER_PID"; then
        echo "orderd did not stop within 30 s of SIGTERM"
        return 1
    fi
    wait "$RUNUSER_PID" || rc=$?
    [[ $rc -eq 0 ]] || { echo "orderd exited $rc after SIGTERM"; return 1; }
}

# post_order CUSTOMER: prints the order id of a 202.
post_order() {
    local out
    out=$(curl -s --max-time 10 -w '\n%{http_code}' -X POST "$BASE/orders" \
        -H 'Content-Type: application/json' \
        -d "{\"customer_id\":\"$1\",\"items\":[{\"item\":\"Laptop\",\"quantity\":1}]}") || return 1
    [[ ${out##*$'\n'} == 202 ]] || return 1
    jq -r .order_id <<<"${out%$'\n'*}"
}

# field ID JQ: a field of GET /orders/ID.
field() { curl -s --max-time 10 "$BASE/orders/$1" | jq -r "$2"; }
status_is() { [[ $(field "$1" .status) == "$2" ]]; }

# stat_is PATH "MODE USER GROUP"
stat_is() {
    local got
    got=$(stat -c '%a %U %G' "$1" 2>/dev/null) || fail "$1 does not exist"
    [[ $got == "$2" ]] || fail "$1 is '$got', want '$2'"
}

# sql QUERY: on the database, as orderd (a connection made by root would
# leave -wal/-shm files the daemon cannot open).
sql() { runuser -u orderd -- sqlite3 -readonly "$DB" "$1"; }

# ---- install, remove, purge -----------------------------------------------------

t_install_remove_purge() {
    machine_ready
    new_deb
    apt_install "$NEW_DEB" || fail "apt-get install $NEW_DEB failed"
    [[ $(pkg_status) == "install ok installed $VERSION-1" ]] || fail "dpkg says: $(pkg_status)"
    # runtime libraries: apt resolved Depends, and nothing is missing at run time
    local libs
    libs=$(ldd /usr/bin/orderd) || fail "ldd /usr/bin/orderd failed"
    ! grep 'not found' <<<"$libs" || fail "libraries not found at run time"

    # where Debian expects each file
    [[ -x /usr/bin/orderd ]] || fail "no /usr/bin/orderd"
    [[ $(orderd --version) == "orderd $VERSION" ]] || fail "orderd --version: $(orderd --version)"
    local unit
    unit=$(dpkg -L orderd | grep -E '^(/usr)?/lib/systemd/system/orderd\.service$') ||
        fail "no orderd.service under /lib/systemd/system"
    grep -qxF 'ExecStart=/usr/bin/orderd -c /etc/orderd/orderd.conf' "$unit" ||
        fail "$unit does not start /usr/bin/orderd"
    local f
    for f in /usr/share/man/man8/orderd.8.gz /usr/share/man/man5/orderd.conf.5.gz \
        /usr/lib/sysusers.d/orderd.conf /usr/lib/tmpfiles.d/orderd.conf; do
        [[ -f $f ]] || fail "no $f"
    done
    [[ $(man -w orderd.conf 2>/dev/null) == /usr/share/man/man5/orderd.conf.5.gz ]] ||
        fail "man -w orderd.conf does not find the installed page"
    local conffiles
    conffiles=$(dpkg-query -W -f='${Conffiles}\n' orderd)
    grep -q '^ /etc/orderd/orderd.conf ' <<<"$conffiles" ||
        fail "/etc/orderd/orderd.conf is not registered as a conffile"
    stat_is /etc/orderd/orderd.conf "640 root orderd"
    # the system user, its group and its state directory
    local pw
    pw=$(getent passwd orderd) || fail "no orderd user"
    IFS=: read -r _ _ uid _ _ home shell <<<"$pw"
    [[ $uid -lt 1000 ]] || fail "orderd is not a system user (uid $uid)"
    [[ $home == /var/lib/orderd && $shell == /usr/sbin/nologin ]] || fail "orderd user: $pw"
    stat_is /var/lib/orderd "750 orderd orderd"

    # the daemon from the installed config, as orderd, on a free port
    daemon_start "$T/orderd.log" ORDERD_SERVER_LISTEN=127.0.0.1:0 || fail "orderd did not start"
    [[ $(ps -o user= -p "$DAEMON_PID") == orderd ]] || fail "orderd runs as $(ps -o user= -p "$DAEMON_PID")"
    [[ $(curl -s -o /dev/null -w '%{http_code}' "$BASE/readyz") == 200 ]] || fail "GET /readyz is not 200"
    local id
    id=$(post_order PKG-1) || fail "POST /orders was not accepted"
    wait_for 15 status_is "$id" completed || fail "order $id is $(field "$id" .status), not completed"
    daemon_stop || fail "orderd did not stop cleanly"
    [[ -f $DB ]] || fail "no database at $DB"
    stat_is "$DB" "600 orderd orderd"
    echo "installed $VERSION-1; order $id completed"

    # dpkg -r: the program goes, the config and the data stay
    local sum
    sum=$(md5sum </etc/orderd/orderd.conf)
    timeout 120 dpkg -r orderd >"$T/dpkg.log" 2>&1 || { tail -n 5 "$T/dpkg.log"; fail "dpkg -r failed"; }
    [[ $(pkg_status) == "deinstall ok config-files $VERSION-1" ]] || fail "after dpkg -r: $(pkg_status)"
    [[ ! -e /usr/bin/orderd && ! -e $unit ]] || fail "dpkg -r left the binary or the unit"
    [[ $(md5sum </etc/orderd/orderd.conf 2>/dev/null) == "$sum" ]] || fail "dpkg -r removed or changed the config"
    [[ -f $DB ]] || fail "dpkg -r removed the database"
    getent passwd orderd >/dev/null || fail "dpkg -r removed the orderd user"
    # and a reinstall finds the order
    apt_install "$NEW_DEB" || fail "apt-get install after dpkg -r failed"
    daemon_start "$T/orderd2.log" ORDERD_SERVER_LISTEN=127.0.0.1:0 || fail "orderd did not start again"
    status_is "$id" completed || fail "after remove and reinstall, order $id is $(field "$id" .status)"
    daemon_stop || fail "orderd did not stop cleanly"

    # dpkg --purge: config and data go too
    timeout 120 dpkg --purge orderd >"$T/dpkg.log" 2>&1 || { tail -n 5 "$T/dpkg.log"; fail "dpkg --purge failed"; }
    [[ $(pkg_status) == not-installed ]] || fail "after dpkg --purge: $(pkg_status)"
    [[ ! -e /etc/orderd ]] || fail "dpkg --purge left /etc/orderd: $(ls -A /etc/orderd)"
    [[ ! -e /var/lib/orderd ]] || fail "dpkg --purge left /var/lib/orderd"
    ! dpkg-statoverride --list /etc/orderd/orderd.conf >/dev/null || fail "dpkg --purge left the statoverride"
    echo "dpkg -r kept the config and the order; dpkg --purge removed both"
}

# ---- upgrade from the previous release --------------------------------------------

# The release to upgrade from: TEST_UPGRADE_FROM, or the newest tag v* that
# HEAD contains and whose version is older than VERSION.
previous_release() {
    if [[ -n ${TEST_UPGRADE_FROM:-} ]]; then
        echo "$TEST_UPGRADE_FROM"
        return
    fi
    local tag
    while read -r tag; do
        if dpkg --compare-versions "${tag#v}" lt "$VERSION"; then
            echo "$tag"
            return
        fi
    done < <(git -C "$ROOT" tag --merged HEAD --list 'v[0-9]*' --sort=-v:refname 2>/dev/null)
}

OLD_SRC=
worktree_remove() {
    [[ -n $OLD_SRC ]] || return 0
    git -C "$ROOT" worktree remove --force "$OLD_SRC" >/dev/null 2>&1 || rm -rf "$OLD_SRC"
    git -C "$ROOT" worktree prune >/dev/null 2>&1 || true
}

# The fulfilment_command of the old daemon: DEAD-* fails (a dead letter with
# max_receives = 1), BLOCK-* waits for $T/release (it holds the only worker
# while the queued orders arrive), the others succeed.
write_fulfil() {
    cat >"$1" <<EOF
#!/bin/sh
order=\$(cat)
case \$order in
*'"customer_id":"DEAD-'*) echo "refused by the package test" >&2; exit 3 ;;
*'"customer_id":"BLOCK-'*)
    i=0
    while [ ! -e '$T/release' ] && [ \$i -lt 600 ]; do sleep 0.1; i=\$((i + 1)); done ;;
esac
exit 0
EOF
    chmod 0755 "$1"
}

# set_key FILE KEY VALUE: the first line "KEY = ..." becomes "KEY = VALUE".
set_key() {
    grep -q "^$2 *=" "$1" || fail "$1 has no '$2 =' line"
    sed -i "0,/^$2 *=.*/s||$2 = $3|" "$1"
}

t_upgrade_from_previous_release() {
    need_dpkg
    command -v git >/dev/null || fail "git is not installed"
    local tag
    tag=$(previous_release)
    [[ -n $tag ]] || skip "skipped: no release tag to upgrade from (shallow clone?)"
    git -C "$ROOT" rev-parse -q --verify "$tag^{commit}" >/dev/null || fail "no tag $tag"
    machine_ready
    new_deb

    # the old release, through git worktree, packaged with this debian/
    OLD_SRC=$WORK/old-src
    worktree_remove
    rm -rf "$OLD_SRC"
    git -C "$ROOT" worktree add --detach "$OLD_SRC" "$tag" >"$T/worktree.log" 2>&1 ||
        { cat "$T/worktree.log"; fail "git worktree add $tag failed"; }
    local old_version
    old_version=$(tr -d '[:space:]' <"$OLD_SRC/VERSION")
    dpkg --compare-versions "$old_version" lt "$VERSION" ||
        fail "$tag holds version $old_version, not older than $VERSION"
    rm -rf "$WORK/old"
    build_deb "$OLD_SRC" "$WORK/old" || fail "the package of $tag did not build"
    local old_deb=$WORK/old/orderd_$old_version-1_$ARCH.deb
    [[ -f $old_deb ]] || fail "no $old_deb"
    worktree_remove

    apt_install "$old_deb" || fail "apt-get install of $old_version failed"
    [[ $(orderd --version) == "orderd $old_version" ]] || fail "orderd --version: $(orderd --version)"

    # the operator's edits of the conffile
    mkdir -m 0755 "$T/bin" && write_fulfil "$T/bin/fulfil.sh"
    set_key "$CONF" listen 127.0.0.1:0
    set_key "$CONF" max_receives 1
    set_key "$CONF" count 1
    set_key "$CONF" fulfilment_command "$T/bin/fulfil.sh"
    set_key "$CONF" format text
    echo "# edited by the package test" >>"$CONF"

    daemon_start "$T/old.log" || fail "orderd $old_version did not start"
    local before
    before=$(sed -n 's/.*store: created schema version \([0-9]*\).*/\1/p' "$T/old.log")
    [[ -n $before ]] || fail "orderd $old_version did not say which schema it created"
    local c id ids=()
    for c in C-1 C-2 C-3 DEAD-1; do
        id=$(post_order "$c") || fail "POST /orders ($c) failed"
        ids+=("$id")
    done
    for id in "${ids[@]:0:3}"; do
        wait_for 15 status_is "$id" completed || fail "$id is $(field "$id" .status), not completed"
    done
    local dead=${ids[3]}
    wait_for 15 status_is "$dead" dead_lettered || fail "$dead is $(field "$dead" .status), not dead_lettered"
    # BLOCK-1 holds the only worker; Q-* stay queued behind it
    local block q=()
    block=$(post_order BLOCK-1) || fail "POST /orders (BLOCK-1) failed"
    wait_for 15 status_is "$block" processing || fail "BLOCK-1 is $(field "$block" .status), not processing"
    for c in Q-1 Q-2 Q-3; do
        id=$(post_order "$c") || fail "POST /orders ($c) failed"
        q+=("$id")
    done
    for id in "${ids[@]}" "${q[@]}"; do
        curl -s --max-time 10 "$BASE/orders/$id" |
            jq -r '[.order_id, .customer_id, .status, .attempts, .processed_at, .last_error] | @tsv'
    done >"$T/before.tsv"
    for id in "${q[@]}"; do
        status_is "$id" queued || fail "$id is $(field "$id" .status), not queued"
    done
    # stop: the drain lets BLOCK-1 finish; the Q-* are left queued
    kill -TERM "$DAEMON_PID"
    sleep 0.3
    touch "$T/release"
    daemon_stop || fail "orderd $old_version did not stop cleanly"
    [[ $(sql "SELECT count(*) FROM orders WHERE status = 'queued'") -eq 3 ]] ||
        fail "not 3 queued orders at the upgrade: $(sql 'SELECT customer_id, status FROM orders')"
    [[ $(sql 'PRAGMA user_version') == "$before" ]] || fail "schema is not $before before the upgrade"
    runuser -u orderd -- orderd -c "$CONF" backup /var/lib/orderd/pre-upgrade.db >"$T/backup.log" 2>&1 ||
        { cat "$T/backup.log"; fail "the pre-upgrade backup failed"; }
    echo "$old_version: schema $before, 3 completed, 1 dead letter, 3 queued (+ BLOCK-1 completed at the stop)"

    # the upgrade, keeping the edited conffile (what an operator answers)
    apt_install -o Dpkg::Options::=--force-confold "$NEW_DEB" || fail "the upgrade to $VERSION failed"
    [[ $(pkg_status) == "install ok installed $VERSION-1" ]] || fail "after the upgrade: $(pkg_status)"
    [[ $(orderd --version) == "orderd $VERSION" ]] || fail "orderd --version: $(orderd --version)"
    log_has "$CONF" "# edited by the package test" || fail "the upgrade replaced the edited conffile"
    grep -qxF "fulfilment_command = $T/bin/fulfil.sh" "$CONF" || fail "the upgrade lost an edited key"
    stat_is "$CONF" "640 root orderd"
    if ! cmp -s <(deb_file "$old_deb" ./etc/orderd/orderd.conf) <(deb_file "$NEW_DEB" ./etc/orderd/orderd.conf); then
        cmp -s "$CONF.dpkg-dist" <(deb_file "$NEW_DEB" ./etc/orderd/orderd.conf) ||
            fail "the new default config is not beside the kept one as $CONF.dpkg-dist"
    fi

    daemon_start "$T/new.log" || fail "orderd $VERSION did not start on the upgraded machine"
    local after
    after=$(sed -n "s/.*store: migrated the database from schema version $before to \([0-9]*\).*/\1/p" "$T/new.log")
    [[ -n $after ]] || fail "no 'migrated the database from schema version $before' line: $(head -n 3 "$T/new.log")"
    for id in "${q[@]}" "$block"; do
        wait_for 20 status_is "$id" completed || fail "$id is $(field "$id" .status) after the upgrade, not completed"
    done
    local line cust now
    while IFS= read -r line; do
        id=${line%%$'\t'*}
        cust=$(cut -f 2 <<<"$line")
        case $cust in
        Q-*)
            [[ $(field "$id" .attempts) == 1 ]] || fail "$cust: $(field "$id" .attempts) attempts, want 1" ;;
        *)
            now=$(curl -s --max-time 10 "$BASE/orders/$id" |
                jq -r '[.order_id, .customer_id, .status, .attempts, .processed_at, .last_error] | @tsv')
            [[ $now == "$line" ]] || fail "$cust changed in the upgrade: was '$line', is '$now'" ;;
        esac
    done <"$T/before.tsv"
    local dlq
    dlq=$(curl -s --max-time 10 "$BASE/admin/dlq")
    grep -qF "\"$dead\"" <<<"$dlq" || fail "the dead letter is not in GET /admin/dlq: $dlq"
    daemon_stop || fail "orderd $VERSION did not stop cleanly"
    [[ $(sql 'PRAGMA user_version') == "$after" ]] || fail "schema is $(sql 'PRAGMA user_version'), the log said $after"
    [[ $after -gt $before ]] || fail "schema $before became $after"
    [[ $(sql 'SELECT count(*) FROM orders') -eq 8 ]] || fail "$(sql 'SELECT count(*) FROM orders') orders, want 8"
    echo "$VERSION: schema $before -> $after; 8 orders kept, the 3 queued completed, the dead letter kept; conffile kept"

    # roll back as docs/operations.md says: the old package refuses the
    # migrated database; the pre-upgrade backup brings it back
    apt_install --allow-downgrades -o Dpkg::Options::=--force-confold "$old_deb" ||
        fail "apt-get install --allow-downgrades $old_version failed"
    local rc=0
    (cd / && timeout 20 runuser -u orderd -- orderd -c "$CONF") >"$T/refused.log" 2>&1 || rc=$?
    [[ $rc -eq 2 ]] || fail "orderd $old_version on schema $after exited $rc, want 2: $(tail -n 2 "$T/refused.log")"
    log_has "$T/refused.log" "is newer than this orderd" || fail "no clear refusal: $(cat "$T/refused.log")"
    (
        cd /var/lib/orderd &&
            mkdir -p broken && mv orderd.db orderd.db-wal orderd.db-shm broken/ 2>/dev/null
        install -m 0600 -o orderd -g orderd pre-upgrade.db orderd.db && rm -f orderd.db-wal orderd.db-shm
    ) || fail "the restore of the backup failed"
    daemon_start "$T/rollback.log" || fail "orderd $old_version did not start on the restored backup"
    status_is "${ids[0]}" completed || fail "C-1 is $(field "${ids[0]}" .status) after the roll back"
    status_is "$dead" dead_lettered || fail "the dead letter is $(field "$dead" .status) after the roll back"
    for id in "${q[@]}"; do
        wait_for 20 status_is "$id" completed || fail "$id is $(field "$id" .status) after the roll back"
    done
    daemon_stop || fail "orderd $old_version did not stop cleanly after the roll back"
    echo "roll back: $old_version refused schema $after (exit 2), ran on the pre-upgrade backup"

    timeout 120 dpkg --purge orderd >"$T/dpkg.log" 2>&1 || { tail -n 5 "$T/dpkg.log"; fail "dpkg --purge failed"; }
    [[ ! -e /etc/orderd && ! -e /var/lib/orderd ]] || fail "dpkg --purge left /etc/orderd or /var/lib/orderd"
}

# ---- runner -------------------------------------------------------------------

if [[ ${1:-} == --one ]]; then
    T=$(mktemp -d "${TMPDIR:-/tmp}/orderd-package.XXXXXX")
    chmod 0755 "$T"
    RUN_ID=${3:-one}
    trap 'machine_restore; worktree_remove; rm -rf "$T"' EXIT
    trap 'exit 143' TERM INT
    fn=t_${2//-/_}
    declare -F "$fn" >/dev/null || fail "no test $2"
    set +e
    "$fn"
    exit $?
fi

LOGS=$(mktemp -d "${TMPDIR:-/tmp}/orderd-package-logs.XXXXXX")
trap 'rm -rf "$LOGS"' EXIT
run_id=$$-$(date +%s)
passed=0
failed=0
skipped=0
selected=("$@")
[[ ${#selected[@]} -gt 0 ]] || selected=("${TESTS[@]}")
for t in "${selected[@]}"; do
    rc=0
    start=$SECONDS
    timeout -k 10 "$TEST_LIMIT_S" "$0" --one "$t" "$run_id" >"$LOGS/$t.log" 2>&1 || rc=$?
    took=$((SECONDS - start))
    last=$(grep -v '^$' "$LOGS/$t.log" | tail -n 1 || true)
    if [[ $rc -eq 0 ]]; then
        echo "ok $t ($took s)"
        sed 's/^/    # /' "$LOGS/$t.log"
        passed=$((passed + 1))
    elif [[ $rc -eq 77 ]]; then
        echo "ok $t # skip $last"
        skipped=$((skipped + 1))
    else
        [[ $rc -eq 124 || $rc -eq 137 ]] && last="timed out after $TEST_LIMIT_S s; $last"
        echo "FAIL $t: $last"
        sed 's/^/    | /' "$LOGS/$t.log" | tail -n 25
        failed=$((failed + 1))
    fi
done
if [[ $skipped -gt 0 ]]; then
    echo "$passed passed, $failed failed, $skipped skipped"
else
    echo "$passed passed, $failed failed"
fi
[[ $failed -eq 0 ]]
