#!/usr/bin/env bash
# Builds the vk-stackpath container image without a Docker engine, then checks it: unpacks its
# layers into a plain directory and runs the binary's `--version` from that root filesystem.
#
#   deploy/build-image.sh [--debug] [--no-buildah] [--tag TAG]
#
#   --debug       build the binary with the dev profile (faster to build, ~10x larger image);
#                 the default is --release
#   --no-buildah  assemble the OCI layout directly (tar + sha256sum) even if buildah exists
#   --tag TAG     image tag (default: the crate version)
#
# Output: an OCI image layout in $CARGO_TARGET_DIR/image/oci (default target/image/oci), which
# `skopeo copy oci:target/image/oci:vk-stackpath:TAG docker://REGISTRY/…` or
# `buildah push` can publish. With buildah (Debian: `apt-get install buildah`) the image is built
# from deploy/Containerfile with the vfs storage driver (works unprivileged in containers, no
# daemon); without it, the same single layer and config are written by hand.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
work="$target_dir/image"
triple=x86_64-unknown-linux-musl
profile=release
use_buildah=auto
tag=""

while [ $# -gt 0 ]; do
    case "$1" in
        --debug) profile=debug ;;
        --no-buildah) use_buildah=no ;;
        --tag) tag="$2"; shift ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "build-image.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

step() { printf '==> %s\n' "$*" >&2; }
fail() { printf 'build-image.sh: %s\n' "$*" >&2; exit 1; }

version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -n1)"
tag="${tag:-$version}"

# 1. The static binary.
if ! rustup target list --installed 2>/dev/null | grep -qx "$triple"; then
    step "adding the $triple target (rustup target add $triple)"
    rustup target add "$triple" || fail "could not add the $triple target; run: rustup target add $triple"
fi
# ring compiles C for the target: it needs a musl C compiler (Debian: musl-tools).
if [ -z "${CC_x86_64_unknown_linux_musl:-}" ]; then
    if command -v x86_64-linux-musl-gcc >/dev/null 2>&1; then :
    elif command -v musl-gcc >/dev/null 2>&1; then export CC_x86_64_unknown_linux_musl=musl-gcc
    else fail "no musl C compiler (x86_64-linux-musl-gcc or musl-gcc); install musl-tools (apt-get install musl-tools)"
    fi
fi
step "building vk-stackpath for $triple ($profile)"
start=$(date +%s)
cargo_args=(build --package vk-stackpath --bin vk-stackpath --target "$triple")
[ "$profile" = release ] && cargo_args+=(--release)
(cd "$root" && cargo "${cargo_args[@]}") || fail "cargo build for $triple failed (see above)"
step "binary built in $(( $(date +%s) - start )) s"
binary="$target_dir/$triple/$profile/vk-stackpath"
[ -x "$binary" ] || fail "cargo did not produce $binary"
# A dynamically linked binary would not start FROM scratch.
if readelf -l "$binary" 2>/dev/null | grep -q 'program interpreter'; then
    fail "$binary is dynamically linked; it must be static to run FROM scratch"
fi

# 2. The build context.
ca_bundle=""
for f in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt /etc/ssl/cert.pem; do
    [ -s "$f" ] && { ca_bundle="$f"; break; }
done
[ -n "$ca_bundle" ] || fail "no CA bundle found (install the ca-certificates package)"
rm -rf "$work"
mkdir -p "$work/context"
ctx="$work/context"
cp "$binary" "$ctx/vk-stackpath"
cp "$ca_bundle" "$ctx/ca-certificates.crt"
printf 'root:x:0:0:root:/:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/:/sbin/nologin\n' > "$ctx/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' > "$ctx/group"
chmod 0555 "$ctx/vk-stackpath"
chmod 0444 "$ctx/ca-certificates.crt" "$ctx/passwd" "$ctx/group"

oci="$work/oci"
if [ "$use_buildah" = auto ] && command -v buildah >/dev/null 2>&1; then
    use_buildah=yes
fi

# 3. The image, as an OCI layout.
start=$(date +%s)
if [ "$use_buildah" = yes ]; then
    step "building the image with buildah (vfs storage under $work/storage)"
    bah=(buildah --storage-driver vfs --root "$work/storage" --runroot "$work/run")
    "${bah[@]}" bud --format oci --layers=false --timestamp 0 \
        -f "$here/Containerfile" -t "localhost/vk-stackpath:$tag" "$ctx"
    "${bah[@]}" push "localhost/vk-stackpath:$tag" "oci:$oci:vk-stackpath:$tag"
    "${bah[@]}" rmi --all >/dev/null
else
    step "assembling the OCI layout directly (tar + sha256sum)"
    blobs="$oci/blobs/sha256"
    mkdir -p "$blobs" "$work/rootfs-src/etc/ssl/certs"
    src="$work/rootfs-src"
    cp -p "$ctx/passwd" "$ctx/group" "$src/etc/"
    cp -p "$ctx/ca-certificates.crt" "$src/etc/ssl/certs/"
    cp -p "$ctx/vk-stackpath" "$src/vk-stackpath"
    # Reproducible: sorted names, root-owned, epoch timestamps, no gzip name/time.
    tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$src" -cf "$work/layer.tar" etc vk-stackpath
    diff_id="$(sha256sum "$work/layer.tar" | cut -d' ' -f1)"
    gzip -n -9 -c "$work/layer.tar" > "$work/layer.tar.gz"
    layer="$(sha256sum "$work/layer.tar.gz" | cut -d' ' -f1)"
    mv "$work/layer.tar.gz" "$blobs/$layer"
    layer_size="$(stat -c %s "$blobs/$layer")"
    # Mirrors the Containerfile.
    jq -n --arg diff "sha256:$diff_id" '{
        architecture: "amd64", os: "linux", created: "1970-01-01T00:00:00Z",
        config: {
            User: "65532:65532",
            Env: ["PATH=/", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"],
            ExposedPorts: {"10250/tcp": {}, "9090/tcp": {}},
            Entrypoint: ["/vk-stackpath"], Cmd: ["run"],
            Labels: {
                "org.opencontainers.image.title": "vk-stackpath",
                "org.opencontainers.image.description": "Virtual Kubelet for StackPath Edge Compute",
                "org.opencontainers.image.licenses": "MIT OR Apache-2.0"
            }
        },
        rootfs: {type: "layers", diff_ids: [$diff]}
    }' > "$work/config.json"
    config="$(sha256sum "$work/config.json" | cut -d' ' -f1)"
    config_size="$(stat -c %s "$work/config.json")"
    mv "$work/config.json" "$blobs/$config"
    jq -n --arg c "sha256:$config" --argjson cs "$config_size" --arg l "sha256:$layer" --argjson ls "$layer_size" '{
        schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
        config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $c, size: $cs},
        layers: [{mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: $l, size: $ls}]
    }' > "$work/manifest.json"
    manifest="$(sha256sum "$work/manifest.json" | cut -d' ' -f1)"
    manifest_size="$(stat -c %s "$work/manifest.json")"
    mv "$work/manifest.json" "$blobs/$manifest"
    jq -n --arg m "sha256:$manifest" --argjson ms "$manifest_size" --arg ref "vk-stackpath:$tag" '{
        schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json",
        manifests: [{mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $m, size: $ms,
                     annotations: {"org.opencontainers.image.ref.name": $ref}}]
    }' > "$oci/index.json"
    printf '{"imageLayoutVersion":"1.0.0"}' > "$oci/oci-layout"
    rm -rf "$src" "$work/layer.tar"
fi
step "image built in $(( $(date +%s) - start )) s"

# 4. Check the image: unpack its layers in order and run the binary from that root filesystem.
step "checking the image: unpacking its layers"
blob() { printf '%s/blobs/sha256/%s' "$oci" "${1#sha256:}"; }
manifest_digest="$(jq -r '.manifests[0].digest' "$oci/index.json")"
manifest_file="$(blob "$manifest_digest")"
config_file="$(blob "$(jq -r '.config.digest' "$manifest_file")")"
rootfs="$work/rootfs"
mkdir -p "$rootfs"
for layer in $(jq -r '.layers[].digest' "$manifest_file"); do
    f="$(blob "$layer")"
    [ "$(sha256sum "$f" | cut -d' ' -f1)" = "${layer#sha256:}" ] || fail "layer $layer does not match its digest"
    tar -xzf "$f" -C "$rootfs"
done
user="$(jq -r '.config.User // ""' "$config_file")"
case "$user" in
    ""|0|0:*|root|root:*) fail "the image runs as root (User=\"$user\"); it must name a non-root user" ;;
esac
[ -s "$rootfs/etc/ssl/certs/ca-certificates.crt" ] || fail "the image has no CA bundle"
entry="$(jq -r '.config.Entrypoint[0]' "$config_file")"
[ -x "$rootfs$entry" ] || fail "the entrypoint $entry is not an executable in the image"
# In a chroot when we may (proves nothing from the host is needed), else directly.
if [ "$(id -u)" = 0 ] && command -v chroot >/dev/null 2>&1; then
    chroot_bin="$(command -v chroot)"
    out="$(env -i "$chroot_bin" --userspec=65532:65532 "$rootfs" "$entry" --version)"
else
    out="$(env -i "$rootfs$entry" --version)"
fi
[ "$out" = "vk-stackpath $version" ] || fail "\`$entry --version\` printed \"$out\", expected \"vk-stackpath $version\""
size="$(du -sh "$oci" | cut -f1)"
step "ok: $out from the unpacked image (user $user, layout $size): $oci (ref vk-stackpath:$tag)"
