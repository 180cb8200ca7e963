#!/usr/bin/env bash
# Assembles the loadshift image as an OCI image layout without a registry or a container
# builder (Debian's umoci and skopeo): the binary (debug info stripped), exactly the shared
# libraries `ldd` says it loads, /etc/passwd and /etc/group with the non-root user 65532, an
# empty /tmp; no shell, nothing else. Then prints what a reviewer checks: `skopeo inspect`, the
# entrypoint, the user and every file of the image.
#
#   deploy/image/build.sh [BINARY] [LAYOUT]   defaults: target/release/loadshift, target/oci
#
# Run it with `podman run --rm oci:target/oci:latest --version` where podman can run containers,
# or copy it to a registry with `skopeo copy oci:target/oci:latest docker://REGISTRY/loadshift`.
# As root it also runs the binary chrooted into the image's root filesystem as user 65532, which
# shows the image's files are all it needs.
set -euo pipefail
bin=${1:-target/release/loadshift}
out=${2:-target/oci}
tag=${TAG:-latest}
for tool in umoci skopeo strip ldd; do
  command -v "$tool" >/dev/null || { echo "build.sh: $tool not found (apt-get install umoci skopeo binutils)" >&2; exit 64; }
done
[ -x "$bin" ] || { echo "build.sh: $bin is not an executable (cargo build --release first)" >&2; exit 64; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rm -rf "$out"
umoci init --layout "$out"
umoci new --image "$out:$tag"
umoci unpack --rootless --image "$out:$tag" "$work/bundle"
root="$work/bundle/rootfs"

install -D -m 0755 "$bin" "$root/usr/local/bin/loadshift"
strip --strip-debug "$root/usr/local/bin/loadshift"
# Exactly the libraries the dynamic loader resolves for this binary, at the paths it asks for.
ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u |
  while read -r lib; do
    install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
  done
mkdir -p "$root/etc" "$root/tmp" "$root/home/nonroot"
chmod 1777 "$root/tmp"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$root/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' > "$root/etc/group"

umoci repack --image "$out:$tag" "$work/bundle"
umoci config --image "$out:$tag" \
  --config.user 65532:65532 \
  --config.entrypoint /usr/local/bin/loadshift \
  --config.cmd proxy --config.cmd --config --config.cmd /etc/loadshift/proxy.yaml \
  --config.workingdir / \
  --config.label org.opencontainers.image.title=loadshift \
  --config.label "org.opencontainers.image.version=$("$bin" --version | awk '{print $2}')"
umoci gc --layout "$out"

echo "== skopeo inspect oci:$out:$tag"
skopeo inspect "oci:$out:$tag"
echo "== entrypoint, cmd and user"
skopeo inspect --config "oci:$out:$tag" |
  python3 -c 'import json,sys; c=json.load(sys.stdin)["config"]; print(json.dumps({k: c.get(k) for k in ("Entrypoint", "Cmd", "User")}))'
echo "== files"
umoci unpack --rootless --image "$out:$tag" "$work/check" >/dev/null
(cd "$work/check/rootfs" && find . -type f | sort)
# The image's own files are enough to run it: the binary inside its root filesystem, as the
# image's user (needs root for chroot; skipped otherwise).
if [ "$(id -u)" = 0 ] && command -v chroot >/dev/null; then
  echo "== chroot --userspec 65532:65532 rootfs /usr/local/bin/loadshift --version"
  chroot --userspec 65532:65532 "$work/check/rootfs" /usr/local/bin/loadshift --version
fi
