#!/usr/bin/env bash
# Build the local test image: a minimal Debian bookworm root with systemd and
# python3, made with debootstrap and loaded with `docker import`, because no
# container registry can be reached from the test machines.
#
# The image is reused when present and built from the same recipe (a label
# holds the recipe's hash). The root file system tarball and the downloaded
# packages are cached under .cache/, so a rebuild after `docker rmi` takes
# seconds. The Debian mirror is the one this machine's apt already uses
# (override with DEBIAN_MIRROR).
#
# KIND=core builds instead a plain root with the suite's own python3 and pip,
# for the core's unit tests on that Python (scripts/core-tests.sh).
#
# Usage: [SUITE=bookworm] [KIND=systemd|core] scripts/build-test-image.sh [--force]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SUITE=${SUITE:-bookworm}
KIND=${KIND:-systemd}
CACHE=${CACHE_DIR:-$ROOT/.cache}/test-image
case $KIND in
systemd)
    # The same variable names the image for Molecule (molecule/*/molecule.yml).
    IMAGE=${OLLAMA_RAMDISK_TEST_IMAGE:-ollama-ramdisk-test:$SUITE}
    # Debian's node_exporter reads the metrics textfile in the monitoring tests;
    # it is installed disabled (only those tests start it).
    INCLUDE=systemd,systemd-sysv,dbus,python3,iproute2,procps,sudo,mount,util-linux,ca-certificates,curl,libgomp1,prometheus-node-exporter
    ;;
core)
    IMAGE=ollama-ramdisk-core:$SUITE
    INCLUDE=python3,python3-pip,python3-yaml,procps,mount,util-linux,passwd,strace
    ;;
*)
    printf 'build-test-image: KIND is systemd or core, not %s\n' "$KIND" >&2
    exit 2
    ;;
esac
# Units that have nothing to do in a container only slow the boot down.
MASK=(
    getty@tty1.service console-getty.service systemd-firstboot.service
    systemd-udevd.service systemd-udev-trigger.service systemd-modules-load.service
    sys-kernel-config.mount sys-kernel-debug.mount sys-kernel-tracing.mount
    dev-hugepages.mount sys-fs-fuse-connections.mount
    apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer
)
# Bump when the root file system is made differently: the image is rebuilt.
REVISION=1
RECIPE=$(echo "$SUITE $KIND $INCLUDE ${MASK[*]} $REVISION" | sha256sum | cut -c1-16)
TARBALL=$CACHE/rootfs-$KIND-$SUITE-$RECIPE.tar

log() { printf 'build-test-image: %s\n' "$*" >&2; }

as_root() {
    if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

# The first deb URI configured for $SUITE (deb822 .sources or one-line .list),
# else the first one configured for any suite of Debian (the same mirror holds
# bullseye and trixie).
apt_mirror() {
    local files=()
    [[ -f /etc/apt/sources.list ]] && files+=(/etc/apt/sources.list)
    shopt -s nullglob
    files+=(/etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources)
    shopt -u nullglob
    ((${#files[@]})) || return 0
    awk -v suite="$SUITE" '
        function flush() {
            if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") && uris != "" && !found) {
                split(uris, u, " "); print u[1]; found = 1
            }
            types = ""; suites = ""; uris = ""
        }
        FILENAME ~ /\.sources$/ {
            if ($0 ~ /^[ \t]*$/) { flush(); next }
            if ($1 == "Types:") { $1 = ""; types = $0 }
            if ($1 == "Suites:") { $1 = ""; suites = $0 }
            if ($1 == "URIs:") { $1 = ""; uris = $0; sub(/^ +/, "", uris) }
            next
        }
        FNR == 1 { flush() }
        /^[ \t]*deb[ \t]/ && !found {
            line = $0; sub(/^[ \t]*deb[ \t]+/, "", line)
            if (line ~ /^\[/) sub(/^\[[^]]*\][ \t]*/, "", line)
            split(line, f, /[ \t]+/)
            if (f[2] == suite) { print f[1]; found = 1 }
        }
        END { flush() }
    ' "${files[@]}" | head -n 1
}

apt_any_mirror() {
    local mirror
    mirror=$(apt_mirror)
    [[ -n $mirror ]] || mirror=$(SUITE=$(sed -n "s/^VERSION_CODENAME=//p" /etc/os-release) apt_mirror)
    echo "$mirror"
}

image_is_current() {
    [[ $(as_root docker image inspect -f '{{ index .Config.Labels "ollama-ramdisk.recipe" }}' "$IMAGE" 2>/dev/null) == "$RECIPE" ]]
}

build_rootfs() {
    local mirror target
    mirror=${DEBIAN_MIRROR:-$(apt_any_mirror)}
    if [[ -z $mirror ]]; then
        log "no apt source for $SUITE found in /etc/apt; set DEBIAN_MIRROR"
        exit 1
    fi
    mkdir -p "$CACHE/debs"
    target=$(mktemp -d "$CACHE/root.XXXXXX")
    # shellcheck disable=SC2064  # expand now: the path is fixed
    trap "as_root rm -rf '$target'" EXIT
    log "debootstrap $SUITE from $mirror"
    as_root debootstrap --variant=minbase --include="$INCLUDE" \
        --cache-dir="$CACHE/debs" "$SUITE" "$target" "$mirror" >"$CACHE/debootstrap.log" 2>&1 || {
        tail -n 30 "$CACHE/debootstrap.log" >&2
        exit 1
    }
    # shellcheck disable=SC2016  # expanded inside the chroot
    as_root chroot "$target" /bin/sh -eu -c '
        if [ "$1" = systemd ]; then
            for unit in $0; do
                ln -sf /dev/null "/etc/systemd/system/$unit"
            done
            systemctl disable prometheus-node-exporter.service
        fi
        : > /etc/machine-id
        rm -f /var/lib/dbus/machine-id
        apt-get clean
        rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/*.log \
            /usr/share/doc/* /usr/share/man/* /usr/share/info/* \
            /usr/share/locale/* /usr/share/zoneinfo/right /usr/share/zoneinfo/posix
    ' "${MASK[*]}" "$KIND"
    log "writing $TARBALL"
    rm -f "$CACHE"/rootfs-"$KIND"-"$SUITE"-*.tar
    as_root tar --numeric-owner -C "$target" -cf "$TARBALL.tmp" .
    mv "$TARBALL.tmp" "$TARBALL"
    as_root rm -rf "$target"
    trap - EXIT
}

main() {
    local force=${1:-}
    local start=$SECONDS
    if [[ $force != --force ]] && image_is_current; then
        log "$IMAGE is present and current"
        return
    fi
    if [[ $force == --force || ! -f $TARBALL ]]; then
        build_rootfs
    fi
    log "importing $IMAGE"
    as_root docker import \
        --change 'CMD ["/sbin/init"]' \
        --change 'ENV container=docker' \
        --change "LABEL ollama-ramdisk.recipe=$RECIPE" \
        "$TARBALL" "$IMAGE" >/dev/null
    log "built $IMAGE in $((SECONDS - start))s"
}

main "$@"
