import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { ToolService } from "../gen/agentplatform/v1/tool_service_pb.js";
import { mintToken } from "../src/auth/tokens.ts";
const url = process.argv[2]!;
const secret = new TextEncoder().encode("bench-fairness-secret-0123456789abcdef0123456789");
const token = await mintToken(secret, { tenants: ["floor-" + Date.now()], roles: ["editor"], subject: "b", ttl: "1h" });
const t = createGrpcTransport({ baseUrl: url, interceptors: [(n) => (r) => (r.header.set("authorization", `Bearer ${token}`), n(r))] });
const health = createClient(Health, t); const tools = createClient(ToolService, t);
for (const [name, call] of [["health", () => health.check({})], ["refused GetTool", () => tools.getTool({ toolId: "00000000-0000-4000-8000-000000000000" }).catch(() => {})]] as const) {
  let n = 0; const end = performance.now() + 4000;
  await Promise.all(Array.from({ length: 32 }, async () => { while (performance.now() < end) { await call(); n++; } }));
  console.log(name, Math.round(n / 4), "calls/s");
}
