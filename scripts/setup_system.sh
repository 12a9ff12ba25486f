#!/usr/bin/env bash
# System packages restem's code sandbox uses. Idempotent, non-interactive, run as root.
#   bubblewrap: OS-level isolation (mount/pid/net/ipc/uts namespaces) for untrusted programs.
#   util-linux: setpriv/unshare/prlimit (uid drop and net namespace when bwrap is unusable).
#   procps:     kill(1), used to sweep a sandbox uid's leftover processes.
#   libtcmalloc-minimal4: the allocator vLLM's CPU worker preloads (restem_assets/generation/vllm_engine.py).
#   postgresql: the shared deployment's instance storage (`restem serve`, dagster_project/postgres_server.py);
#               restem runs its own cluster from these binaries (port 5433), not Debian's system one.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "setup_system.sh: run as root (it installs system packages)" >&2
    exit 1
fi

need=()
command -v bwrap >/dev/null 2>&1 || need+=(bubblewrap)
command -v setpriv >/dev/null 2>&1 || need+=(util-linux)
command -v kill >/dev/null 2>&1 || need+=(procps)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || need+=(postgresql)

export DEBIAN_FRONTEND=noninteractive
if [ "${#need[@]}" -gt 0 ]; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

# Optional (speed only): without it the vLLM CPU worker runs on glibc malloc.
if ! ls /usr/lib/*/libtcmalloc_minimal.so.4 /usr/lib64/libtcmalloc_minimal.so.4 >/dev/null 2>&1; then
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends libtcmalloc-minimal4; } \
        || echo "setup_system.sh: libtcmalloc-minimal4 not installed; vLLM on CPU runs without tcmalloc" >&2
fi

# Report whether bwrap can actually build a sandbox here (containers may deny namespaces).
if bwrap --unshare-all --die-with-parent --ro-bind / / --proc /proc --dev /dev true 2>/dev/null; then
    echo "setup_system.sh: bubblewrap works (namespaces available)"
else
    echo "setup_system.sh: WARNING bubblewrap is installed but cannot create namespaces here;" \
         "restem's sandbox will fall back to rlimits only" >&2
fi
