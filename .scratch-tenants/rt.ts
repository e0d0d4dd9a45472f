import pg from "pg";
const c = new pg.Client({ connectionString: "postgres://postgres@127.0.0.1:5432/bench_fair" }); await c.connect();
for (let i = 0; i < 200; i++) await c.query("select 1");
const n = 2000; let t0 = performance.now();
for (let i = 0; i < n; i++) await c.query("select 1");
console.log("select 1 RT", ((performance.now() - t0) / n).toFixed(3), "ms");
t0 = performance.now();
for (let i = 0; i < 500; i++) { await c.query("begin"); await c.query("select set_config('app.tenant_id','x',true)"); await c.query("select 1"); await c.query("commit"); }
console.log("4-RT tx", ((performance.now() - t0) / 500).toFixed(3), "ms");
await c.end();
