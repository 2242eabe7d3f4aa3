#!/usr/bin/env bash
# Fuzzes relay's STUN/ChannelData decoders (fuzz/fuzz_targets/stun_decode.rs)
# for a bounded number of runs; exits non-zero if libFuzzer finds a crash,
# leaving the input under fuzz/artifacts/stun_decode/.
#
#   scripts/fuzz.sh [RUNS] [TARGET]      # RUNS defaults to 100000
#
# Installs cargo-fuzz when it is missing. cargo-fuzz needs a nightly compiler:
# `cargo +nightly` when rustup has one, else stable with RUSTC_BOOTSTRAP=1.
# New corpus entries go to fuzz/corpus/TARGET (not committed); the committed
# seeds in fuzz/seeds/TARGET are only read. The build goes to
# $CARGO_TARGET_DIR (default fuzz/target).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

runs=${1:-100000}
target=${2:-stun_decode}
case "$runs" in
    '' | *[!0-9]*) echo "scripts/fuzz.sh: RUNS must be a number, not \`$runs\`" >&2; exit 2 ;;
esac

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "scripts/fuzz.sh: installing cargo-fuzz" >&2
    cargo install --locked cargo-fuzz
fi

if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    fuzz=(cargo +nightly fuzz)
else
    export RUSTC_BOOTSTRAP=1
    fuzz=(cargo fuzz)
fi

mkdir -p "corpus/$target"
seeds=()
[ -d "seeds/$target" ] && seeds=("seeds/$target")
# -max_total_time bounds a slow machine too; -runs is the usual stop.
"${fuzz[@]}" run "$target" "corpus/$target" "${seeds[@]}" -- \
    -runs="$runs" -max_total_time="${FUZZ_MAX_SECONDS:-600}" -print_final_stats=1
