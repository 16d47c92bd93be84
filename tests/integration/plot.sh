#!/usr/bin/env bash
# dtf plot over the logdirs of two real trainings: one SVG with a line per
# task, axes, ticks, labels and a legend, opened in headless Chromium (run
# as root: --no-sandbox) whose screenshot must show the picture (the lines'
# colors, dark text and axes, many colors), not a blank page. Then untrusted
# input: a corrupt event file is skipped with a message, a directory
# without event files and an unwritable output fail with one, bad flags are
# usage errors.
#   tests/integration/plot.sh BUILD_DIR
. "$(dirname "$0")/testlib.bash"
cd "$ROOT"

RUNS=$SCRATCH/runs
for lr in 0.003 0.0005; do
  expect_exit 0 "a training with learning rate $lr" timeout 300 "$DTF" run train.lua \
    --set trainsteps=400 --set lossevery=20 --set evalevery=100 --set learningrate=$lr \
    --set logdir="$RUNS/lr$lr"
done

expect_exit 0 "dtf plot draws both runs" "$DTF" plot "$RUNS" -o "$SCRATCH/plot.svg"
expect_out "^wrote $SCRATCH/plot.svg \(2 tasks, [0-9]+ points\)" "it says what it wrote"
python3 - "$SCRATCH/plot.svg" >"$SCRATCH/svg.out" 2>&1 <<'EOF'
import sys
import xml.etree.ElementTree as ET
ns = "{http://www.w3.org/2000/svg}"
root = ET.parse(sys.argv[1]).getroot()
texts = [t.text or "" for t in root.iter(ns + "text")]
print("polylines", len(list(root.iter(ns + "polyline"))))
print("legend", sum(1 for t in texts if t.startswith("lr")))
print("axis", sum(1 for t in texts if t == "global step"))
print("ticks", sum(1 for t in texts if t.replace(".", "").isdigit()))
for t in texts:
    if t.startswith("lr"):
        print("label", t)
EOF
cat "$SCRATCH/svg.out"
val() { awk -v k="$1" '$1 == k { print $2 }' "$SCRATCH/svg.out"; }
check "the SVG is well-formed XML with a line per task and tag ($(val polylines) polylines)" \
  test "$(val polylines)" -ge 6
check "a legend naming each task's series" \
  bash -c "grep -q '^label lr0.003/worker0 train/loss' '$SCRATCH/svg.out' && grep -q '^label lr0.0005/worker0 eval/accuracy' '$SCRATCH/svg.out'"
check "axes labelled with the global step, with tick labels" test "$(val axis)" -ge 2 -a "$(val ticks)" -ge 10

# ---- what a browser shows ---------------------------------------------------------------------
mkdir -p "$SCRATCH/chrome"
timeout 120 chromium --headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --user-data-dir="$SCRATCH/chrome" \
  --window-size=1000,700 --screenshot="$SCRATCH/plot.png" "file://$SCRATCH/plot.svg" >"$SCRATCH/chrome.log" 2>&1
check "headless chromium took a screenshot" test -s "$SCRATCH/plot.png"
python3 "$ROOT/tests/integration/png_check.py" "$SCRATCH/plot.png" 1f77b4 d62728 >"$SCRATCH/png.out" 2>&1
cat "$SCRATCH/png.out"
pv() { awk -v k="$1" -v c="${2:-}" '$1 == k && (c == "" || $2 == c) { print $NF }' "$SCRATCH/png.out"; }
check "the screenshot is not blank: $(pv colors) colors" test "$(pv colors)" -ge 50
check "text and axes are drawn: $(pv dark) dark pixels" test "$(pv dark)" -ge 1000
check "the first task's lines are drawn: $(pv color 1f77b4) blue pixels" test "$(pv color 1f77b4)" -ge 300
check "the second task's lines are drawn: $(pv color d62728) red pixels" test "$(pv color d62728)" -ge 300

# ---- untrusted input ---------------------------------------------------------------------------
f=$(ls "$RUNS"/lr0.003/tensorboard/worker0/events.out.tfevents.*)
mkdir -p "$SCRATCH/bad/tensorboard/worker9"
cp "$f" "$SCRATCH/bad/tensorboard/worker9/events.out.tfevents.1.x.1"
printf '\377' | dd of="$SCRATCH/bad/tensorboard/worker9/events.out.tfevents.1.x.1" bs=1 seek=200 conv=notrunc 2>/dev/null
expect_exit 1 "a logdir whose only file is corrupt fails" "$DTF" plot "$SCRATCH/bad"
expect_out 'skipping .*events.out.tfevents.1.x.1: record at byte [0-9]+: bad (data|length) CRC' \
  "the corrupt file is named, with the offset and what is wrong"
cp -r "$RUNS/lr0.003" "$SCRATCH/bad/good"
expect_exit 0 "a corrupt file beside a good one: the good one is drawn" "$DTF" plot "$SCRATCH/bad" -o "$SCRATCH/bad.svg"
expect_out 'skipping ' "and the corrupt one is reported"
head -c 100 "$f" >"$SCRATCH/bad/tensorboard/worker9/events.out.tfevents.2.x.2"
expect_exit 0 "a torn last record (a writer still at work) is not an error" "$DTF" plot "$SCRATCH/bad" -o "$SCRATCH/bad.svg"
mkdir -p "$SCRATCH/empty"
expect_exit 1 "a directory without event files" "$DTF" plot "$SCRATCH/empty"
expect_out "no TensorBoard event files under $SCRATCH/empty" "says so"
expect_exit 1 "an output that cannot be written" "$DTF" plot "$RUNS" -o /proc/nope/plot.svg
expect_out '/proc/nope/plot.svg' "names it"
expect_exit 2 "no LOGDIR is a usage error" "$DTF" plot
expect_exit 2 "-o without a file is a usage error" "$DTF" plot "$RUNS" -o
expect_exit 0 "dtf help plot" "$DTF" help plot
expect_out 'usage: dtf plot LOGDIR \[-o FILE.svg\]' "prints the usage"
expect_exit 0 "without -o it writes LOGDIR/plot.svg" "$DTF" plot "$RUNS/lr0.003"
check "LOGDIR/plot.svg exists" test -s "$RUNS/lr0.003/plot.svg"
finish
