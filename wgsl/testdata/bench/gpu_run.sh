# gpu_run.sh: runs the GEMV and onnxruntime-web benches on a machine with an
# NVIDIA GPU and no network (the device machine), from the repository root.
# Prepare here first (both folders are git-ignored):
#   .gl/        apt-get download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2
#   .devcache/bench/: node.xz (xz -9 of /usr/bin/node), dawn.node.xz (of
#     node_modules/webgpu/dist/linux-x64/dawn.node), index.js + package.json of
#     node_modules/webgpu, ort.webgpu.min.mjs + ort-wasm-simd-threaded.asyncify.mjs
#     and ort.wasm.xz (of ort-wasm-simd-threaded.asyncify.wasm) from onnxruntime-web/dist
# then run `bash wgsl/testdata/bench/gpu_run.sh` there, carrying .gl and .devcache.
# GEMV_ARGS adds gemv_bench.mjs flags (e.g. GEMV_ARGS="--filter llama8b");
# ORT=0 skips the onnxruntime-web bench.
set -e
for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
export XDG_RUNTIME_DIR=/tmp/xdg; mkdir -p -m 700 $XDG_RUNTIME_DIR
B=.devcache/bench
unxz() { if command -v xz >/dev/null; then xz -dc "$1"; else python3 -c "import lzma,sys; sys.stdout.buffer.write(lzma.open(sys.argv[1]).read())" "$1"; fi; }
mkdir -p /tmp/nm/webgpu/dist/linux-x64 /tmp/ort
unxz $B/node.xz > /tmp/node; chmod +x /tmp/node
unxz $B/dawn.node.xz > /tmp/nm/webgpu/dist/linux-x64/dawn.node
cp $B/index.js $B/package.json /tmp/nm/webgpu/
cp $B/ort.webgpu.min.mjs $B/ort-wasm-simd-threaded.asyncify.mjs /tmp/ort/
unxz $B/ort.wasm.xz > /tmp/ort/ort-wasm-simd-threaded.asyncify.wasm
nvidia-smi --query-gpu=name,memory.total,clocks.max.mem --format=csv || true
/tmp/node --version
/tmp/node wgsl/testdata/bench/gemv_bench.mjs --webgpu /tmp/nm/webgpu/index.js --mb 256 --iters 400 --json $OUT/gemv.json $GEMV_ARGS 2>&1 | grep -v artificially
[ "${ORT:-1}" = 0 ] || timeout 300 /tmp/node wgsl/testdata/bench/ort_matmulnbits.mjs --webgpu /tmp/nm/webgpu/index.js --ort /tmp/ort --iters 200 --mb 256 --sets 32 --json $OUT/ort.json 2>&1 | grep -v artificially
