#!/usr/bin/env bash
# Runs the indexer example as a user would: its top words and word total must equal a direct
# count of the same files (python3), the poison file must be reported after its workers'
# restarts, the metrics must count them, and no process of the run may be left. A scrape of
# --harrow-metrics in the middle of a job must show the workers' contexts. A run whose files are
# slow must fail with harrow.DeadlineExceeded, leaving no process either.
set -euo pipefail
binary="$1"
# Never the machine-wide default registry (see examples/counter's test).
export HARROW_REGISTRY="${HARROW_REGISTRY:-none}"
work=$(mktemp -d "${TEST_TMPDIR:-/tmp}/indexer-test.XXXXXX")
trap 'rm -rf "$work"' EXIT

# No process of the run whose session is $1 may be left (the example runs as a session leader:
# its workers, in process groups of their own, stay in its session). Read from /proc.
expect_none_left() {
  python3 - "$1" <<'PY' || exit 1
import os, sys
left = []
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        stat = open(f"/proc/{pid}/stat").read()
        cmdline = open(f"/proc/{pid}/cmdline").read().replace("\0", " ")
    except OSError:
        continue
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[3] == sys.argv[1]:  # the session id
        left.append(f"{pid} ({fields[0]}) {cmdline}")
if left:
    print("processes left behind:", *left, sep="\n")
    sys.exit(1)
PY
}

port=$((20000 + RANDOM % 20000))
out=$(setsid "$binary" --dir="$work/corpus" --files=60 --words=2000 --workers=3 --top=12 \
        --harrow-metrics=127.0.0.1:$port 2>"$work/stderr") \
  || { echo "example failed:"; echo "$out"; cat "$work/stderr"; exit 1; }
echo "$out"
cat "$work/stderr"
sid=$(grep -oE '^indexer \(pid [0-9]+\)' <<<"$out" | grep -oE '[0-9]+')
expect_none_left "$sid"

for expected in "poison.bin: not indexed: harrow.ActorRestarted" "indexed 60 of 61 files" \
                "3 worker restarts" "top 12 words:" "3 restarts (harrow_restarts_total)"; do
  grep -qF -- "$expected" <<<"$out" || { echo "missing: $expected"; exit 1; }
done
grep -qF "a NUL byte in $work/corpus/poison.bin: the tokenizer crashes" "$work/stderr" \
  || { echo "missing: the workers' crash"; exit 1; }
grep -qE "^indexed 61/61 files, [0-9]+ words, 1 failed, 3 restarts" "$work/stderr" \
  || { echo "missing: the final progress line"; exit 1; }

# The same files counted directly.
expected=$(python3 - "$work/corpus" 12 <<'PY'
import collections, glob, re, sys
counts = collections.Counter()
for path in glob.glob(sys.argv[1] + "/*.txt"):
    with open(path, encoding="latin-1") as f:
        counts.update(w.lower() for w in re.findall(r"[A-Za-z]+", f.read()))
print(f"words {sum(counts.values())}")
ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: int(sys.argv[2])]
for i, (word, n) in enumerate(ranked, 1):
    print(f"{i:4d}. {word:<12} {n}")
PY
)
total=$(head -1 <<<"$expected" | cut -d' ' -f2)
grep -qF "indexed 60 of 61 files, $total words" <<<"$out" \
  || { echo "the word total differs from the direct count ($total)"; exit 1; }
if [ "$(grep -E '^ +[0-9]+\. ' <<<"$out")" != "$(tail -n +2 <<<"$expected")" ]; then
  echo "the top words differ from the direct count:"; tail -n +2 <<<"$expected"; exit 1
fi

# --harrow-metrics serves the tree's metrics while the job runs (120 files of 30 ms on 3 workers:
# about 1.2 s): scraped in the middle, they show the workers' index contexts under way.
port=$((20000 + RANDOM % 20000))
setsid "$binary" --dir="$work/live" --files=120 --words=100 --workers=3 --slow-ms=30 \
  --harrow-metrics=127.0.0.1:$port >"$work/live.out" 2>&1 &
runner=$!
python3 - "$port" >"$work/scrape" <<'PY' || { echo "no scrape while the job ran"; cat "$work/live.out"; exit 1; }
import sys, time, urllib.request
deadline = time.time() + 30
while time.time() < deadline:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=2).read().decode()
    except OSError:
        time.sleep(0.02)
        continue
    if 'harrow_tasks_in_flight{actor="indexer-' in text and 'method="index"} 1' in text:
        print(text)
        sys.exit(0)
    time.sleep(0.02)
sys.exit(1)
PY
wait "$runner" || { echo "the live run failed:"; cat "$work/live.out"; exit 1; }
grep -qE '^harrow_calls_started_total\{actor="indexer-[0-9]",interface="Indexer",method="index"\}' \
  "$work/scrape" || { echo "missing: the workers' index contexts in the scrape"; exit 1; }
sid=$(grep -oE '^indexer \(pid [0-9]+\)' "$work/live.out" | grep -oE '[0-9]+')
expect_none_left "$sid"

# A deadline on the whole job: 60 files of 100 ms on 3 workers cannot finish in 500 ms.
if out=$(setsid "$binary" --dir="$work/slow" --files=60 --words=100 --workers=3 --slow-ms=100 \
           --deadline-ms=500 2>&1); then
  echo "the slow job should have failed:"; echo "$out"; exit 1
fi
echo "$out"
grep -qF "harrow.DeadlineExceeded" <<<"$out" || { echo "missing: DeadlineExceeded"; exit 1; }
sid=$(grep -oE '^indexer \(pid [0-9]+\)' <<<"$out" | grep -oE '[0-9]+')
expect_none_left "$sid"
echo "3 passed, 0 failed"
