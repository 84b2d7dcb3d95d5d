#!/usr/bin/env bash
# Make sure the image's base (debian:bookworm-slim) is in the local Docker engine.
# Order: already present -> pulled from the registry -> built from the Debian mirror with
# debootstrap and imported (for networks that reach Debian's packages but not Docker Hub).
set -euo pipefail
base=${1:-debian:bookworm-slim}
suite=${base#*:}; suite=${suite%-slim}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if docker image inspect "$base" >/dev/null 2>&1; then exit 0; fi
echo "base image $base: not in the local engine; trying the registry" >&2
if timeout 60 docker pull "$base" >/dev/null 2>&1; then exit 0; fi
echo "base image $base: the registry cannot be reached; building it from $mirror with debootstrap" >&2
if ! command -v debootstrap >/dev/null; then
    echo "base image $base: needs debootstrap (Debian/Ubuntu: apt-get install debootstrap), or a" \
         "registry that serves $base" >&2
    exit 2
fi
if [ "$(id -u)" != 0 ]; then
    echo "base image $base: debootstrap must run as root (sudo make docker-image), or pull $base" >&2
    exit 2
fi
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase "$suite" "$root" "$mirror" >/dev/null
# what a -slim image leaves out: apt lists and caches, docs, man pages
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/usr/share/doc/* "$root"/usr/share/man/*
tar -C "$root" -c . | docker import - "$base" >/dev/null
echo "base image $base: imported from debootstrap ($suite, $mirror)" >&2
