#!/usr/bin/env bash
# Builds a container image of shoal without pulling anything: a root file system is assembled
# from a local shoal binary, /bin/sh (the Helm chart's entry command derives the node id from the
# pod ordinal with it), the shared libraries `ldd` lists for both, a minimal /etc, /tmp and /data,
# and loaded with `docker import`. No base image, no registry, a few seconds.
#
#   scripts/docker-image.sh [BINARY] [TAG]
#     BINARY  default target/release/shoal   (build it first: cargo build --release)
#     TAG     default shoal:dev
#   SHOAL_IMAGE_NO_STRIP=1 keeps debug info (by default the copy in the image is stripped).
#
# The image runs as uid/gid 10001 (the chart's securityContext), works with a read-only root
# file system, and starts `shoal serve --listen 0.0.0.0:6333` with data in /data.
set -euo pipefail

bin=${1:-target/release/shoal}
tag=${2:-shoal:dev}
[ -x "$bin" ] || { echo "docker-image.sh: $bin is not an executable (cargo build --release?)" >&2; exit 1; }
command -v docker >/dev/null || { echo "docker-image.sh: docker not found" >&2; exit 1; }

root=$(mktemp -d)
tarball="$root.tar"
trap 'rm -rf "$root" "$tarball"' EXIT

mkdir -p "$root"/{usr/local/bin,bin,etc,tmp,data}
cp "$bin" "$root/usr/local/bin/shoal"
if [ -z "${SHOAL_IMAGE_NO_STRIP:-}" ] && command -v strip >/dev/null; then
  strip --strip-debug "$root/usr/local/bin/shoal"
fi
sh_path=$(readlink -f /bin/sh)
cp "$sh_path" "$root/bin/sh"

# Every shared object the two programs load (ldd resolves the whole tree), at the same path,
# plus the dynamic loader itself (the line without "=>").
copy_libs() {
  ldd "$1" | awk '/=> \// { print $3 } /^[[:space:]]*\/[^ ]+ \(0x/ { print $1 }' | while read -r lib; do
    [ -e "$root$lib" ] && continue
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
}
copy_libs "$bin"
copy_libs "$sh_path"

cat > "$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
shoal:x:10001:10001:shoal:/data:/bin/sh
EOF
cat > "$root/etc/group" <<'EOF'
root:x:0:
shoal:x:10001:
EOF
echo 'hosts: files dns' > "$root/etc/nsswitch.conf"
chmod 1777 "$root/tmp"
chmod 0755 "$root/data"

# Everything owned by root except /data, which belongs to the shoal user.
tar -C "$root" --numeric-owner --owner=0 --group=0 --exclude=./data -cf "$tarball" .
tar -C "$root" --numeric-owner --owner=10001 --group=10001 --no-recursion -rf "$tarball" ./data

docker import \
  --change 'USER 10001:10001' \
  --change 'WORKDIR /data' \
  --change 'ENV SHOAL_DATA_DIR=/data' \
  --change 'EXPOSE 6333 6335' \
  --change 'ENTRYPOINT ["/usr/local/bin/shoal"]' \
  --change 'CMD ["serve", "--listen", "0.0.0.0:6333"]' \
  "$tarball" "$tag" >/dev/null
echo "built $tag ($(du -sh "$tarball" | cut -f1) uncompressed) from $bin"
