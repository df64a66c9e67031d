#!/usr/bin/env bash
# The README's test command on a machine with nothing installed by hand: a Debian 12 (bookworm)
# root made by debootstrap, given only what a new machine of this project's kind has (Node 20
# and npm, python3, make, g++, git), a clone of this checkout in root's home, and `.ci/run`
# run in it as root. A clean clone on a developer's machine can pass while a fresh machine
# fails: a tool installed by hand (a newer kubectl from another repository) or a checkout
# outside root's 0700 home hides the missing step. Both were found this way (2026-12-07).
#
#   sudo scripts/fresh-debian-check.sh [WORKDIR]     (default /var/tmp/wren-fresh; needs debootstrap)
#
# The root is made once and kept pristine in WORKDIR/pristine; each run copies it, so the
# packages `npm test` installs are installed afresh every time. The log is WORKDIR/run/root/ci.log.
# The host's CA bundle and the CA variables (NODE_EXTRA_CA_CERTS, SSL_CERT_FILE, SSL_CERT_DIR)
# are passed in: a machine behind an intercepting proxy needs them to reach npm and Debian.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "run as root (debootstrap, chroot, mounts)" >&2; exit 2; }
command -v debootstrap >/dev/null || { echo "missing debootstrap: apt-get install -y debootstrap" >&2; exit 2; }
REPO=$(cd "$(dirname "$0")/.." && pwd)
W=${1:-/var/tmp/wren-fresh}
P=$W/pristine
R=$W/run
mkdir -p "$W"

if [ ! -x "$P/usr/bin/apt-get" ]; then
  debootstrap --variant=minbase --include=ca-certificates,python3,make,g++,git,procps bookworm "$P" http://deb.debian.org/debian
fi

cleanup() {
  for m in tmp run dev sys proc; do mountpoint -q "$R/$m" && umount -R "$R/$m" || true; done
  mountpoint -q "$R" && umount "$R" || true
}
trap cleanup EXIT
cleanup
rm -rf "$R"
cp -a "$P" "$R"

# Node 20 and npm as the machine has them (the project's own Node 24 comes with npm ci).
NODE20=$(command -v node)
cp "$NODE20" "$R/usr/bin/node"
NPM_DIR=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
mkdir -p "$R/usr/lib/node_modules" "$R/usr/include"
cp -a "$NPM_DIR" "$R/usr/lib/node_modules/npm"
[ -d /usr/include/node ] && cp -a /usr/include/node "$R/usr/include/"
ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$R/usr/bin/npm"
ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$R/usr/bin/npx"
[ -f /root/.npmrc ] && cp /root/.npmrc "$R/root/.npmrc"
# The machine's name and how it resolves are the machine's, not the image's (a chroot shares the host's name).
cp /etc/resolv.conf /etc/hosts "$R/etc/"
cp -a /usr/local/share/ca-certificates/. "$R/usr/local/share/ca-certificates/" 2>/dev/null || true
cp /etc/ssl/certs/ca-certificates.crt "$R/etc/ssl/certs/ca-certificates.crt"

# "/" a mount point (ip netns exec makes it a slave), the kernel's filesystems, a private /run and /tmp.
mount --bind "$R" "$R"
for m in proc sys dev; do mount --rbind "/$m" "$R/$m"; done
mount -t tmpfs tmpfs "$R/run"
mkdir -p "$R/run/netns"
mount -t tmpfs -o size=8g tmpfs "$R/tmp"

git clone -q "$REPO" "$R/root/wren"
set +e
chroot "$R" bash -c "cd /root/wren && env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin TERM=dumb \
  ${NODE_EXTRA_CA_CERTS:+NODE_EXTRA_CA_CERTS=$NODE_EXTRA_CA_CERTS} ${SSL_CERT_FILE:+SSL_CERT_FILE=$SSL_CERT_FILE} ${SSL_CERT_DIR:+SSL_CERT_DIR=$SSL_CERT_DIR} \
  bash .ci/run > /root/ci.log 2>&1"
rc=$?
tail -3 "$R/root/ci.log"
echo "fresh Debian run: exit $rc (log $R/root/ci.log)"
exit $rc
