#!/usr/bin/env bash
# build-aux/build-deb.sh — builds the Debian package of a source tree with
# Debian's tooling (dpkg-buildpackage, debhelper).
#
#   build-aux/build-deb.sh SRC OUT
#
# SRC is a source tree of orderd (this checkout for `make deb`; an older
# release checked out by tests/package/run.sh), OUT the directory that gets
# orderd_<version>-1_<arch>.deb. The packaging is this checkout's debian/
# (or DEBIAN_DIR), so a release tagged before debian/ existed can be built
# too. The version is SRC's VERSION file, the one place that holds it:
# debian/changelog must have an entry "orderd (VERSION-1)"; entries of newer
# versions are left out of an older tree's package, and a VERSION with no
# entry stops the build (add the entry first).
#
# SRC is copied (without build/, .git, var/ and any debian/) to
# OUT/deb-stage/orderd-VERSION, and the package is built there: dpkg-buildpackage
# writes into debian/ and the tree above it, and `debian/rules clean` runs
# `make clean`, neither of which may touch SRC.
#
# Environment:
#   DEB_BUILD_OPTIONS  passed on; default "nocheck parallel=<CPUs>" (make test
#                      runs the suites; DEB_BUILD_OPTIONS= runs the unit suite
#                      in the build)
#   DEBIAN_DIR         the packaging to use (default: debian/ beside this script)
set -euo pipefail

usage() {
    echo "usage: $0 SRC OUT" >&2
    exit 2
}
[[ $# -eq 2 ]] || usage
die() {
    echo "build-deb: $*" >&2
    exit 1
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$(cd "$1" && pwd) || die "no source tree at $1"
mkdir -p "$2"
out=$(cd "$2" && pwd)
debian=${DEBIAN_DIR:-$here/../debian}
[[ -f $debian/control && -f $debian/changelog && -x $debian/rules ]] ||
    die "no packaging at $debian (control, changelog, rules)"
debian=$(cd "$debian" && pwd)

for tool in dpkg-buildpackage dpkg-parsechangelog dh; do
    command -v "$tool" >/dev/null ||
        die "$tool is not installed (make deps-package installs dpkg-dev and debhelper)"
done

[[ -f $src/VERSION && -f $src/Makefile ]] || die "$src has no VERSION or Makefile"
version=$(tr -d '[:space:]' <"$src/VERSION")
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "$src/VERSION is '$version', not X.Y.Z"
debver=$version-1
arch=$(dpkg --print-architecture)

stage=$out/deb-stage
tree=$stage/orderd-$version
rm -rf "$stage"
mkdir -p "$tree"
tar -C "$src" --exclude=./build --exclude=./.git --exclude=./var --exclude=./debian -cf - . |
    tar -C "$tree" -xf -
cp -a "$debian" "$tree/debian"
rm -rf "$tree/debian/orderd" "$tree/debian/.debhelper" "$tree/debian/files" \
    "$tree"/debian/*.substvars "$tree"/debian/*.debhelper* "$tree/debian/debhelper-build-stamp"

# debian/changelog from the entry of VERSION down: an older tree's package
# says what that release was, not what came after it.
log=$tree/debian/changelog
awk -v want="$debver" '
    /^orderd \(/ { v = $2; gsub(/[()]/, "", v); if (v == want) found = 1 }
    found' "$debian/changelog" >"$log"
[[ -s $log ]] || die "debian/changelog has no entry for $debver (VERSION is $version): add one at its top"
while read -r newer; do
    dpkg --compare-versions "$newer" gt "$debver" ||
        die "debian/changelog lists $newer above $debver: entries are newest first"
done < <(awk '/^orderd \(/ { v = $2; gsub(/[()]/, "", v); print v }' "$debian/changelog" |
    sed "/^$debver\$/,\$d")
[[ $(dpkg-parsechangelog -l "$log" -S Version) == "$debver" ]] || die "cannot read $log"

echo "build-deb: orderd $debver from $src (packaging: $debian)"
rm -f "$out/orderd_${debver}_$arch.deb"
(
    cd "$tree"
    DEB_BUILD_OPTIONS=${DEB_BUILD_OPTIONS-nocheck parallel=$(nproc)} \
        dpkg-buildpackage -b -us -uc
) >"$stage/build.log" 2>&1 || {
    tail -n 30 "$stage/build.log" >&2
    die "dpkg-buildpackage failed (whole log: $stage/build.log)"
}
mv "$stage/orderd_${debver}_$arch.deb" "$out/"
echo "build-deb: $out/orderd_${debver}_$arch.deb"
