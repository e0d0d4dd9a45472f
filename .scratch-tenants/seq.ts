import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { ToolService } from "../gen/agentplatform/v1/tool_service_pb.js";
import { mintToken } from "../src/auth/tokens.ts";
const url = process.argv[2]!;
const secret = new TextEncoder().encode("bench-fairness-secret-0123456789abcdef0123456789");
const token = await mintToken(secret, { tenants: ["seq-" + Date.now()], roles: ["editor"], subject: "b", ttl: "1h" });
const tools = createClient(ToolService, createGrpcTransport({ baseUrl: url, interceptors: [(n) => (r) => (r.header.set("authorization", `Bearer ${token}`), n(r))] }));
const { tool } = await tools.createTool({ tool: { name: "t", description: "d" } });
const lat: number[] = [];
for (let i = 0; i < 60; i++) await tools.getTool({ toolId: tool!.id });
for (let i = 0; i < 300; i++) { const t0 = performance.now(); await tools.getTool({ toolId: tool!.id }); lat.push(performance.now() - t0); await new Promise((r) => setTimeout(r, 5)); }
lat.sort((a, b) => a - b);
console.log("sequential GetTool p50", lat[150]!.toFixed(2), "p90", lat[270]!.toFixed(2));
