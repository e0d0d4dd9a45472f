// The load generator, as a process of its own so its CPU is not the server's:
// reads a LoadJob as JSON on stdin, drives one row, and reports LoadMessages
// as JSON lines on stdout.
import { grpcFire, grpcFrame } from "./grpc-h2.ts";
import { connectJsonFire } from "./connect-h1.ts";
import { runLoop } from "./load-loop.ts";
import type { LoadMessage } from "./load-result.ts";
import { ROWS, type EncodedCall } from "./rows.ts";
import type { Seed } from "./seed.ts";

/** What the parent asks of one load process. */
export interface LoadJob {
  row: string;
  url: string;
  seed: Seed;
  runId: string;
  connections: number;
  streams: number;
  h1Connections: number;
  warmupMs: number;
  measureMs: number;
}

// A ring of pre-encoded calls for rows whose bodies repeat.
const RING = 1_024;

const say = (m: LoadMessage) => process.stdout.write(`${JSON.stringify(m)}\n`);

let input = "";
for await (const chunk of process.stdin) input += chunk;
const job = JSON.parse(input) as LoadJob;
const row = ROWS.find((r) => r.name === job.row);
if (!row) throw new Error(`no row ${job.row}`);

const build = row.build(job.seed, job.runId);
function encoded<T>(wrap: (c: EncodedCall) => T): (i: number) => T {
  if (row!.perCall) return (i) => wrap(build(i));
  const ring = Array.from({ length: RING }, (_, i) => wrap(build(i)));
  return (i) => ring[i % RING]!;
}

const { fire, close } =
  row.transport === "grpc"
    ? await grpcFire(job.url, row.path, job.connections, encoded((c) => ({ frame: grpcFrame(c.body), token: c.token })))
    : connectJsonFire(job.url, row.path, job.h1Connections, encoded((c) => ({ body: Buffer.from(c.body), token: c.token })));

const result = await runLoop(fire, {
  concurrency: row.transport === "grpc" ? job.connections * job.streams : job.h1Connections,
  warmupMs: job.warmupMs,
  measureMs: job.measureMs,
  onWindow: (edge) => say({ event: edge === "start" ? "window-start" : "window-end" }),
});
close();
say({ event: "result", result });
process.exit(0);
