#!/usr/bin/env bash
# The runs behind RESULTS.md (issue 16, item 4), timed part by part: `make results`.
#
#   1. protocol: the paper's protocol (experiments/configs/paper_protocol.toml: stage 1 on the
#      `low` preset, then stage 2 from each seed's stage-1 checkpoint, D from the pilot rule) for
#      mgrpo, main_only, single_agent, no_alignment and async_queue, 10 seeds, both tasks.
#   2. balance: the sub reward's local share w = b3 / (b2 + b3) in {0.2, 5/9 (the paper's
#      0.4 : 0.5), 0.9} under a judge that flips each expert verdict with probability 0 or 0.3
#      (reward.judge = flip), mgrpo on species from random init with the quick preset's budget
#      (experiments/configs/quick.toml: 80 steps, no stage 1, so the sub-agent must learn from
#      its own reward; after stage 1 species is solved before stage 2 starts), BALANCE_SEEDS
#      seeds.
#   3. callcost: the time claim with each sub-agent call costing the main reward 0.02
#      (reward.call_cost) in stage 2, mgrpo, main_only and single_agent on species,
#      CALLCOST_SEEDS seeds, SHORT_STEPS stage-2 steps (species curves level off within the
#      first evaluations after stage 1). Stage 1 runs without the cost: with it, the random-init
#      policies learn to answer at once before any success is seen (measured: 0 of 8 seeds
#      succeed, d_k = 0).
# Then `mgrpo report` on each part (REPORT.md, summary, claims table, figures per part).
#
# Environment: OUT (default runs/results), WORKERS (2), SEEDS (10), BALANCE_SEEDS (8),
# CALLCOST_SEEDS (8), SHORT_STEPS (80), MGRPO (the CLI; default .venv/bin/mgrpo), PARTS (default
# "protocol balance callcost report"). OUT/provenance.txt gets the commit and a dirty-tree
# flag, OUT/commands.txt every command, OUT/times.txt each part's wall seconds.
set -euo pipefail
OUT=${OUT:-runs/results}
WORKERS=${WORKERS:-2}
SEEDS=${SEEDS:-10}
BALANCE_SEEDS=${BALANCE_SEEDS:-8}
CALLCOST_SEEDS=${CALLCOST_SEEDS:-8}
SHORT_STEPS=${SHORT_STEPS:-80}
MGRPO=${MGRPO:-.venv/bin/mgrpo}
PARTS=${PARTS:-protocol balance callcost report}
SPECIES=mgrpo/InvasiveSpecies-v0
for p in $PARTS; do
    case $p in
    protocol | balance | callcost | report) ;;
    *)
        echo "error: PARTS: unknown part '$p'; allowed: protocol balance callcost report" >&2
        exit 2
        ;;
    esac
done
[[ -x $MGRPO || $(command -v "$MGRPO") ]] || {
    echo "error: MGRPO: '$MGRPO' is not a command; run 'make install' first or set MGRPO" >&2
    exit 2
}
mkdir -p "$OUT"
{
    echo "commit $(git rev-parse HEAD)"
    git status --porcelain --untracked-files=no | sed 's/^/dirty: /'
    echo "started $(date -u +%FT%TZ) on $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
} >>"$OUT/provenance.txt"

part() { # part NAME COMMAND...: run, log the command and its wall seconds
    local name=$1 t0
    shift
    echo "$*" >>"$OUT/commands.txt"
    echo "== $name: $*"
    t0=$(date +%s)
    "$@"
    echo "$name $(($(date +%s) - t0))" >>"$OUT/times.txt"
}

want() { [[ " $PARTS " == *" $1 "* ]]; }

if want protocol; then
    part protocol "$MGRPO" ablate paper_protocol \
        --variants mgrpo,main_only,single_agent,no_alignment,async_queue \
        --seeds "$SEEDS" --workers "$WORKERS" --out "$OUT/protocol"
fi
if want balance; then
    for noise in 0 0.3; do
        for w in 0.2 paper 0.9; do
            share=()
            [[ $w == paper ]] || share=(--set "reward.local_share=$w")
            part "balance_noise${noise}_w$w" "$MGRPO" ablate quick --envs "$SPECIES" \
                --variants mgrpo --seeds "$BALANCE_SEEDS" --workers "$WORKERS" \
                --set reward.judge=flip --set "reward.judge_noise=$noise" "${share[@]}" \
                --out "$OUT/balance/noise${noise}_w$w"
        done
    done
fi
if want callcost; then
    part callcost "$MGRPO" ablate paper_protocol --envs "$SPECIES" \
        --variants mgrpo,main_only,single_agent --seeds "$CALLCOST_SEEDS" \
        --workers "$WORKERS" --set "steps=$SHORT_STEPS" --set reward.call_cost=0.02 \
        --set ablate.stage1.reward.call_cost=0 \
        --out "$OUT/callcost"
fi
if want report; then
    for p in protocol balance callcost; do
        [[ -d "$OUT/$p" ]] && part "report_$p" "$MGRPO" report "$OUT/$p"
    done
fi
echo "finished $(date -u +%FT%TZ)" >>"$OUT/provenance.txt"
