#!/bin/sh
# demo.sh — what `make demo` runs: build the embedded default model
# (testdata/stories260K) from testdata/demo.recipe.yaml into a signed,
# validated bundle, verify it, inspect it, and generate text with it twice:
# on the CPU reference executor (smelt generate) and with the bundle's own
# JS runtime on WebGPU in Node (smelt run; Dawn, needs node_modules/webgpu).
#
# Environment: BIN (default bin/smelt, built if missing), DEMO_DIR (keep the
# key and the bundle there; default a temporary folder removed at exit),
# PROMPT, N.
set -eu
cd "$(dirname "$0")/.."
BIN=${BIN:-bin/smelt}
PROMPT=${PROMPT:-Once upon a time}
N=${N:-32}
if [ ! -x "$BIN" ]; then
	go build -trimpath -buildvcs=false -ldflags='-s -w -buildid=' -o "$BIN" ./cmd/smelt
fi
if [ -n "${DEMO_DIR:-}" ]; then
	dir=$DEMO_DIR
	rm -rf "$dir/key" "$dir/key.pub" "$dir/key.pub.jwk"
	mkdir -p "$dir"
else
	dir=$(mktemp -d "${TMPDIR:-/tmp}/smelt-demo.XXXXXX")
	trap 'rm -rf "$dir"' EXIT
fi
# Dawn on Mesa's lavapipe when there is no GPU.
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
if [ -z "${VK_ICD_FILENAMES:-}" ] && [ -f /usr/share/vulkan/icd.d/lvp_icd.json ]; then
	export VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/lvp_icd.json
fi

step() { printf '\n== %s\n' "$*"; }
step "smelt keygen --out $dir/key"
"$BIN" keygen --out "$dir/key"
step "smelt build testdata/demo.recipe.yaml --out $dir/bundle --key $dir/key"
"$BIN" build testdata/demo.recipe.yaml --out "$dir/bundle" --key "$dir/key"
step "smelt verify $dir/bundle --pubkey $dir/key.pub"
"$BIN" verify "$dir/bundle" --pubkey "$dir/key.pub"
step "smelt inspect $dir/bundle"
"$BIN" inspect "$dir/bundle"
step "smelt generate $dir/bundle --prompt \"$PROMPT\" -n $N   (CPU reference executor)"
"$BIN" generate "$dir/bundle" --prompt "$PROMPT" -n "$N"
step "smelt run $dir/bundle --pubkey $dir/key.pub --prompt \"$PROMPT\" -n $N   (JS runtime, WebGPU on Dawn)"
"$BIN" run "$dir/bundle" --pubkey "$dir/key.pub" --prompt "$PROMPT" -n "$N"
