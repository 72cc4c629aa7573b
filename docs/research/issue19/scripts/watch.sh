#!/bin/bash
# Chain: stop q1 after outer 1 finished -> q1b ceiling; stop q2 after outer0 seed1 -> q2b, q2c.
cd /tmp/r19/tree
export PYTHONPATH=/tmp/r19/tree:/tmp/r19/scripts OMP_NUM_THREADS=1
PY=/work/main/.venv/bin/python
q1done=0; q2done=0
while [ $q1done = 0 ] || [ $q2done = 0 ]; do
  if [ $q1done = 0 ] && grep -q "outer 1 seed 2 inner 3" /tmp/r19/out/q1.log; then
    kill 10495; q1done=1
    (nice -n 19 $PY /tmp/r19/scripts/q1b_ceiling.py 0 0 /tmp/r19/out/q1b.jsonl > /tmp/r19/out/q1b.log 2>&1 &)
  fi
  if [ $q2done = 0 ] && grep -q "outer 0 seed 1 inner 3" /tmp/r19/out/q2.log; then
    kill 11891; q2done=1
    (nice -n 19 $PY /tmp/r19/scripts/q2_generic.py 0 0,1 /tmp/r19/out/q2b.jsonl current,gfeat_rot15x2,gfeat_rot30x4 > /tmp/r19/out/q2b.log 2>&1; \
     nice -n 19 $PY /tmp/r19/scripts/q2_generic.py 1 0 /tmp/r19/out/q2c.jsonl current,mixup0.2,rot15x2,rot45x2,gfeat,gfeat_rot45x2,gfeat_rot15x2,linsvm_C0.1 > /tmp/r19/out/q2c.log 2>&1 &)
  fi
  sleep 10
done
