#!/usr/bin/env bash
# Servers reject every kind of bad message and change nothing: a worker that
# sends each server, before every step, one of each bad message (wrong token
# or version, broken header or frames, sizes against the header or over the
# limit, labels out of range, NaN/Inf, replayed and future steps, foreign and
# spoofed senders, unknown type/flag/dtype), plus a flood of 2,500 strays and
# a frame over ZMQ_MAXMSGSIZE, gets replies identical byte for byte to a clean
# run's; each server counts exactly the messages sent and logs only the first
# ten and then one in a thousand.
set -euo pipefail
: "${BUILD_DIR:?}" "${SOURCE_DIR:?}"
. "$SOURCE_DIR/deploy/mpi-env.sh"
out=$(mktemp -d /tmp/arcface-rogue.XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$out"' EXIT
args=(embedding_size=16 batch_size=8 steps=8 warmup_steps=2 lr=0.5 num_classes=1000 step_timeout=60 seed=3
      max_message_bytes=65536 threads=1)
run() { # name attack [key=value ...]
  local name=$1 attack=$2
  shift 2
  timeout 300 mpirun --bind-to none -np 2 "$BUILD_DIR/arcface-ps" "${args[@]}" "$@" \
    : -np 1 "$BUILD_DIR/tests/rogue_worker" "$out/$name.replies" "$attack" "${args[@]}" "$@" > "$out/$name.log" 2>&1 ||
    { cat "$out/$name.log"; echo "run $name failed"; exit 1; }
}
run clean 0
run attacked 1
cmp "$out/clean.replies" "$out/attacked.replies" || { echo "the attacked run's replies differ"; exit 1; }
echo "replies of $(( $(stat -c %s "$out/clean.replies") / 4 )) floats identical"
sent=$(sed -n 's/^rogue_worker: sent \([0-9]*\) rejectable.*/\1/p' "$out/attacked.log")
[ -n "$sent" ] || { cat "$out/attacked.log"; echo "no count from rogue_worker"; exit 1; }
for p in 0 1; do
  summary=$(grep "^\[ps $p\] warning: $sent messages rejected during the run" "$out/attacked.log") ||
    { grep "rejected" "$out/attacked.log" | tail -5; echo "ps $p did not count $sent rejections"; exit 1; }
  logged=$(grep -c "^\[ps $p\] warning: rejected message #" "$out/attacked.log")
  expect=$(( 10 + sent / 1000 ))
  [ "$logged" -eq "$expect" ] || { echo "ps $p logged $logged rejections, expected $expect (rate limit)"; exit 1; }
done
echo "$summary"
# Every kind of bad message was told apart (counts per server, per step).
for kind in "job token mismatch $(( 8 + 2500 ))" "protocol version mismatch 8" "bad header 8" "bad frame count 16" \
            "size disagrees with header 24" "over configured limit 8" "label out of range 16" "non-finite value 16" \
            "checksum mismatch 8" "wrong step 15" "not a worker 8" "spoofed sender 8" "unknown message type 24"; do
  grep -q "$kind" <<< "$summary" || { echo "the summary lacks '$kind'"; exit 1; }
done
echo "each server rejected and counted $sent messages, logging $logged of them"

# encrypt = curve: the same numbers; the strangers' connections (own keys,
# the right server key) are refused at the handshake, so only the messages
# on the worker's own connection arrive, and each is rejected as before.
run curve_attacked 1 encrypt=curve
cmp "$out/clean.replies" "$out/curve_attacked.replies" || { echo "the CURVE run's replies differ"; exit 1; }
sent=$(sed -n 's/^rogue_worker: sent \([0-9]*\) rejectable.*/\1/p' "$out/curve_attacked.log")
for p in 0 1; do
  summary=$(grep "^\[ps $p\] warning: $sent messages rejected during the run" "$out/curve_attacked.log") ||
    { grep "rejected" "$out/curve_attacked.log" | tail -5; echo "ps $p did not count $sent rejections"; exit 1; }
  ! grep -q "spoofed sender" <<< "$summary" || { echo "a stranger's message got through CURVE: $summary"; exit 1; }
  grep -Eq "^\[ps $p\] warning: [0-9]+ CURVE handshakes refused" "$out/curve_attacked.log" ||
    { grep -i curve "$out/curve_attacked.log" | tail; echo "ps $p refused no CURVE handshake"; exit 1; }
done
echo "with CURVE: $summary; $(grep -m1 'CURVE handshakes refused' "$out/curve_attacked.log")"
