#!/usr/bin/env bash
# Builds the dts-operator image without pulling anything: a static musl binary
# built on this host, put into the final stage of ./Dockerfile (FROM scratch,
# USER 65532, ENTRYPOINT ["/dts-operator", "run"]). The Dockerfile's builder
# stage does the same compile inside rust:bookworm where a registry is reachable.
#
#   hack/build-image.sh [image-name]    default dts-operator:<Cargo.toml version>
#
# Needs: rustup target <arch>-unknown-linux-musl, musl-tools, and buildah,
# podman or docker. Prints the image name on success.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
image=${1:-dts-operator:$version}
target="$(uname -m)-unknown-linux-musl"

# BUILD_PROFILE=dev (as `make test` uses) compiles much faster; the image is
# the same but for the binary's optimisation.
profile=${BUILD_PROFILE:-release}
cargo build --profile "$profile" --locked --target "$target" --bin dts-operator >&2
case "$profile" in dev) outdir=debug ;; *) outdir=$profile ;; esac
bin="${CARGO_TARGET_DIR:-target}/$target/$outdir/dts-operator"
# A static binary has no program interpreter; scratch has no libc to offer one.
if readelf -l "$bin" | grep -q 'Requesting program interpreter'; then
  echo "FAIL: $bin is dynamically linked" >&2
  exit 1
fi

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp "$bin" "$ctx/dts-operator"
# Debug info is of no use in the image (and makes a dev build's image ~80x larger).
strip "$ctx/dts-operator"
# The Dockerfile's final stage, verbatim except that the binary comes from the context.
sed -n '/^FROM scratch/,$p' Dockerfile \
  | sed 's#^COPY --from=builder /dts-operator /dts-operator#COPY dts-operator /dts-operator#' \
  > "$ctx/Containerfile"
grep -q '^COPY dts-operator /dts-operator$' "$ctx/Containerfile" \
  || { echo "FAIL: Dockerfile final stage no longer matches this script" >&2; exit 1; }

if command -v buildah >/dev/null; then
  # vfs + chroot: works unprivileged and inside containers; FROM scratch needs no pull.
  buildah --storage-driver vfs bud --isolation chroot --layers=false \
    -f "$ctx/Containerfile" -t "$image" "$ctx" >&2
  buildah --storage-driver vfs inspect --type image \
    --format 'user={{.OCIv1.Config.User}} entrypoint={{.OCIv1.Config.Entrypoint}}' "$image" >&2
  echo >&2
  # Smoke test: the binary starts inside the image as the image's user.
  c=$(buildah --storage-driver vfs from "$image")
  trap 'buildah --storage-driver vfs rm "$c" >/dev/null; rm -rf "$ctx"' EXIT
  buildah --storage-driver vfs run --isolation chroot --user 65532:65532 "$c" -- /dts-operator --version >&2
elif command -v podman >/dev/null; then
  podman build -f "$ctx/Containerfile" -t "$image" "$ctx" >&2
elif docker info >/dev/null 2>&1; then
  docker build -f "$ctx/Containerfile" -t "$image" "$ctx" >&2
else
  echo "FAIL: no image builder (buildah, podman or a running docker daemon)" >&2
  exit 1
fi
echo "$image"
