D=$(mktemp -d); PORT=18778
env DATA_DIR=$D PORT=$PORT HOST=127.0.0.1 JWT_SECRET=bench-fairness-secret-0123456789abcdef0123456789 LOG_LEVEL=error DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_fair RATE_LIMIT_PER_SECOND=${RATE:-100} /work/main/node_modules/node/bin/node --import ./scripts/require-node.mjs src/main.ts 2>/dev/null &
PID=$!
sleep 6
npx node .scratch-tenants/seq.ts http://127.0.0.1:$PORT 2>&1 | grep -v nodedir
kill $PID; wait $PID 2>/dev/null; rm -rf $D
