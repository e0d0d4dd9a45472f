import { create, toBinary, toJsonString, type DescMessage, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { AgentType } from "../../gen/agentplatform/v1/agent_pb.js";
import {
  CreateAgentRequestSchema,
  GetAgentRequestSchema,
  ListAgentsRequestSchema,
  UpdateAgentRequestSchema,
} from "../../gen/agentplatform/v1/agent_service_pb.js";
import {
  ExecuteAgentRequestSchema,
  GetExecutionStatsRequestSchema,
  ListExecutionsRequestSchema,
  StatsBucketSize,
} from "../../gen/agentplatform/v1/execution_service_pb.js";
import { GetToolRequestSchema, ListToolsRequestSchema } from "../../gen/agentplatform/v1/tool_service_pb.js";
import { HealthCheckRequestSchema } from "../../gen/grpc/health/v1/health_pb.js";
import type { Seed } from "./seed.ts";

/** One encoded call: the body (protobuf binary for gRPC, JSON for Connect) and its bearer token. */
export interface EncodedCall {
  body: Uint8Array;
  token: string;
}

/** A row of the table: one RPC driven at one process. */
export interface RowDef {
  /** Name in the table and in BENCH_ROWS. */
  name: string;
  /** Which process is loaded: the bare grpc-js ceiling or src/main.ts. */
  process: "ceiling" | "server";
  /** gRPC over HTTP/2, or Connect JSON over HTTP/1.1. */
  transport: "grpc" | "connect-json";
  /** HTTP path of the procedure. */
  path: string;
  /** A tenant's API call: it should cost exactly one database transaction. */
  apiCall: boolean;
  /** Builds call number `i`; `perCall` rows differ on every call, the others repeat a ring of at most 1 024. */
  build(seed: Seed, runId: string): (i: number) => EncodedCall;
  perCall?: boolean;
  /** Every call is the same (one body, one token): h2load can drive it (BENCH_DRIVER=h2load). */
  single?: boolean;
  /** Targets of issue #12: throughput relative to the ceiling, CPU per call, p99. */
  targets?: { ratio?: number; cpuMs?: number; p99Ms?: number };
}

const AGENT = "/agentplatform.v1.AgentService/";
const TOOL = "/agentplatform.v1.ToolService/";
const EXECUTION = "/agentplatform.v1.ExecutionService/";
const HEALTH = "/grpc.health.v1.Health/Check";

/** Every (tenant, id) pair of a seeded list, tenants interleaved. */
function pairs(seed: Seed, ids: (t: Seed["tenants"][number]) => string[]): { token: string; id: string }[] {
  const out: { token: string; id: string }[] = [];
  const longest = Math.max(...seed.tenants.map((t) => ids(t).length));
  for (let i = 0; i < longest; i++) for (const t of seed.tenants) if (i < ids(t).length) out.push({ token: t.token, id: ids(t)[i]! });
  return out;
}

function binary<D extends DescMessage>(schema: D, init: MessageInitShape<D>, token: string): EncodedCall {
  return { body: toBinary(schema, create(schema, init)), token };
}

function byTenant<D extends DescMessage>(schema: D, init: (t: Seed["tenants"][number]) => MessageInitShape<D>) {
  return (seed: Seed) => {
    const calls = seed.tenants.map((t) => binary(schema, init(t), t.token));
    return (i: number) => calls[i % calls.length]!;
  };
}

/** The rows, in table order. The ceiling comes first: every other row is measured against it. */
export const ROWS: RowDef[] = [
  {
    name: "ceiling Health/Check",
    single: true,
    process: "ceiling",
    transport: "grpc",
    path: HEALTH,
    apiCall: false,
    build: () => {
      const call = binary(HealthCheckRequestSchema, {}, "");
      return () => call;
    },
  },
  {
    name: "Health/Check",
    single: true,
    process: "server",
    transport: "grpc",
    path: HEALTH,
    apiCall: false,
    build: () => {
      const call = binary(HealthCheckRequestSchema, {}, "");
      return () => call;
    },
    targets: { ratio: 0.7 },
  },
  {
    name: "GetTool",
    process: "server",
    transport: "grpc",
    path: `${TOOL}GetTool`,
    apiCall: true,
    build: (seed) => {
      const p = pairs(seed, (t) => t.toolIds);
      return (i) => binary(GetToolRequestSchema, { toolId: p[i % p.length]!.id }, p[i % p.length]!.token);
    },
    targets: { ratio: 0.12 },
  },
  {
    name: "GetAgent",
    process: "server",
    transport: "grpc",
    path: `${AGENT}GetAgent`,
    apiCall: true,
    build: (seed) => {
      const p = pairs(seed, (t) => t.agentIds);
      return (i) => binary(GetAgentRequestSchema, { agentId: p[i % p.length]!.id }, p[i % p.length]!.token);
    },
    targets: { ratio: 0.1, cpuMs: 0.6, p99Ms: 15 },
  },
  {
    name: "ListAgents(50)",
    process: "server",
    transport: "grpc",
    path: `${AGENT}ListAgents`,
    apiCall: true,
    build: byTenant(ListAgentsRequestSchema, () => ({ pageSize: 50 })),
    targets: { ratio: 0.03, cpuMs: 2 },
  },
  {
    name: "ListTools(50)",
    process: "server",
    transport: "grpc",
    path: `${TOOL}ListTools`,
    apiCall: true,
    build: byTenant(ListToolsRequestSchema, () => ({ pageSize: 50 })),
  },
  {
    name: "CreateAgent",
    process: "server",
    transport: "grpc",
    path: `${AGENT}CreateAgent`,
    apiCall: true,
    perCall: true,
    build: (seed, runId) => (i) => {
      const t = seed.tenants[i % seed.tenants.length]!;
      return binary(
        CreateAgentRequestSchema,
        {
          agent: {
            name: `new-${runId}-${i}`,
            role: "support triage",
            description: "Created under load by the bench.",
            agentType: AgentType.CUSTOM,
            tags: ["bench", "load"],
            toolIds: [t.toolIds[i % t.toolIds.length]!, t.toolIds[(i + 1) % t.toolIds.length]!],
            systemPrompt: "You are a careful support agent.",
          },
        },
        t.token,
      );
    },
    targets: { ratio: 0.05 },
  },
  {
    name: "UpdateAgent",
    process: "server",
    transport: "grpc",
    path: `${AGENT}UpdateAgent`,
    apiCall: true,
    perCall: true,
    // No etag: the API allows an unconditional update, so no read is needed per call.
    build: (seed) => {
      const p = pairs(seed, (t) => t.agentIds);
      return (i) =>
        binary(
          UpdateAgentRequestSchema,
          { agentId: p[i % p.length]!.id, agent: { description: `Updated by the bench, call ${i}.` }, updateMask: { paths: ["description"] } },
          p[i % p.length]!.token,
        );
    },
  },
  {
    name: "ExecuteAgent(echo)",
    process: "server",
    transport: "grpc",
    path: `${EXECUTION}ExecuteAgent`,
    apiCall: true,
    build: byTenant(ExecuteAgentRequestSchema, (t) => ({ input: { agentId: t.echoAgentId, prompt: "hello bench" } })),
  },
  {
    name: "ListExecutions p1",
    single: true,
    process: "server",
    transport: "grpc",
    path: `${EXECUTION}ListExecutions`,
    apiCall: true,
    build: (seed) => {
      const call = binary(ListExecutionsRequestSchema, { pageSize: 50 }, seed.tenants[0]!.token);
      return () => call;
    },
  },
  {
    name: "ListExecutions deep",
    single: true,
    process: "server",
    transport: "grpc",
    path: `${EXECUTION}ListExecutions`,
    apiCall: true,
    build: (seed) => {
      const call = binary(ListExecutionsRequestSchema, { pageSize: 50, pageToken: seed.deepPageToken }, seed.tenants[0]!.token);
      return () => call;
    },
  },
  {
    name: "GetExecutionStats",
    single: true,
    process: "server",
    transport: "grpc",
    path: `${EXECUTION}GetExecutionStats`,
    apiCall: true,
    build: (seed) => {
      const call = binary(
        GetExecutionStatsRequestSchema,
        {
          startTime: timestampFromDate(new Date(seed.statsFrom)),
          endTime: timestampFromDate(new Date(seed.statsTo)),
          bucketSize: StatsBucketSize.HOUR,
        },
        seed.tenants[0]!.token,
      );
      return () => call;
    },
  },
  {
    name: "GetAgent Connect/h1",
    process: "server",
    transport: "connect-json",
    path: `${AGENT}GetAgent`,
    apiCall: true,
    build: (seed) => {
      const p = pairs(seed, (t) => t.agentIds);
      const enc = new TextEncoder();
      return (i) => ({
        body: enc.encode(toJsonString(GetAgentRequestSchema, create(GetAgentRequestSchema, { agentId: p[i % p.length]!.id }))),
        token: p[i % p.length]!.token,
      });
    },
  },
];

/** The rows BENCH_ROWS picks (prefix match, case-insensitive); all when undefined. The ceiling always runs. */
export function pickRows(wanted: string[] | undefined): RowDef[] {
  if (!wanted) return ROWS;
  const picks = (r: RowDef, w: string) => {
    const exact = ROWS.some((x) => x.name.toLowerCase() === w);
    return exact ? r.name.toLowerCase() === w : r.name.toLowerCase().startsWith(w);
  };
  return ROWS.filter((r, i) => i === 0 || wanted.some((w) => picks(r, w)));
}
