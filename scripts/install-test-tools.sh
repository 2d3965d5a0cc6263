#!/usr/bin/env bash
# Install the test tools that do not come from pip: PostgreSQL (Debian's server package; the tests
# start their own throwaway cluster with it), Azurite, the Azure Blob emulator the storage tests
# run against, and xfsprogs (mkfs.xfs), with which the copy-on-write tests make an XFS filesystem
# with reflink in a loop-mounted image, and systemd-analyze for the deployment unit. Idempotent and quiet: a no-op (a few ms) when the pinned
# versions are present.
#
#   scripts/install-test-tools.sh        # installs into <repo>/.test-tools
#   TEST_TOOLS_DIR=/elsewhere scripts/install-test-tools.sh
#
# moto (S3) and gcp-storage-emulator (GCS) are Python packages: they come with the test extra.
set -euo pipefail

AZURITE_VERSION="3.35.0"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="${TEST_TOOLS_DIR:-$REPO/.test-tools}"
STAMP="$TOOLS/node_modules/azurite/package.json"

# a symlink that leads nowhere (or to itself) is no install: replace it with a folder of our own
if [ -L "$TOOLS" ] && [ ! -d "$TOOLS" ]; then
    rm -f "$TOOLS"
fi

installed_version() {
    [ -x "$TOOLS/node_modules/.bin/azurite-blob" ] && [ -f "$STAMP" ] || return 1
    sed -n 's/^  "version": "\(.*\)",$/\1/p' "$STAMP"
}

apt_install() {
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "install-test-tools: $* required (e.g. apt-get install $*)" >&2
        exit 1
    fi
    echo "install-test-tools: installing $* with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && [ -z "${WEIGHTVAULT_PG_BINDIR:-}" ]; then
    apt_install postgresql
fi

# systemd-analyze (Debian's systemd package) checks deploy/weightvault@.service
if ! command -v systemd-analyze >/dev/null 2>&1; then
    apt_install systemd
fi

# xfsprogs from Debian; without root or apt-get the XFS tests skip and say why
if ! command -v mkfs.xfs >/dev/null 2>&1 && [ ! -x /usr/sbin/mkfs.xfs ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "install-test-tools: installing xfsprogs with apt-get" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -qq --no-install-recommends xfsprogs >/dev/null 2>&1 \
            || { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends xfsprogs >/dev/null; }
    else
        echo "install-test-tools: mkfs.xfs not found and cannot install xfsprogs (needs root and apt-get);" \
            "the XFS reflink tests will be skipped" >&2
    fi
fi

if [ "$(installed_version 2>/dev/null || true)" = "$AZURITE_VERSION" ]; then
    exit 0
fi

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    apt_install nodejs npm
fi

echo "install-test-tools: installing azurite@$AZURITE_VERSION into $TOOLS" >&2
mkdir -p "$TOOLS"
npm install --prefix "$TOOLS" --no-audit --no-fund --no-save --loglevel=error \
    "azurite@$AZURITE_VERSION" >/dev/null

if [ "$(installed_version || true)" != "$AZURITE_VERSION" ]; then
    echo "install-test-tools: azurite@$AZURITE_VERSION did not install into $TOOLS" >&2
    exit 1
fi
