import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { ToolService } from "../gen/agentplatform/v1/tool_service_pb.js";
import { mintToken } from "../src/auth/tokens.ts";
import { loadConfig } from "../src/config.ts";
import { migrateUp, openDatabase } from "../src/db/orm.ts";
import { createLogger } from "../src/log.ts";
import { createAppServer } from "../src/server.ts";
const SECRET = "x".repeat(40);
for (const rate of ["0", "100"]) {
  const config = loadConfig({ JWT_SECRET: SECRET, HOST: "127.0.0.1", PORT: "0", RATE_LIMIT_PER_SECOND: rate, DATABASE_URL: process.env.DBURL });
  const orm = await openDatabase({ ...config.database });
  await migrateUp(orm);
  const server = createAppServer({ config, orm, logger: createLogger("error") });
  const port = await server.listen(0, "127.0.0.1");
  server.health.setServing(true);
  const token = await mintToken(new TextEncoder().encode(SECRET), { tenants: ["lat-" + rate + Date.now()], roles: ["editor"], subject: "b", ttl: "1h" });
  const tools = createClient(ToolService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}`, interceptors: [(n) => (r) => (r.header.set("authorization", `Bearer ${token}`), n(r))] }));
  const { tool } = await tools.createTool({ tool: { name: "t", description: "d" } });
  const lat: number[] = [];
  for (let i = 0; i < 400; i++) { const t0 = performance.now(); await tools.getTool({ toolId: tool!.id }); lat.push(performance.now() - t0); if (i % 2) await new Promise((r) => setTimeout(r, 10)); }
  lat.sort((a, b) => a - b);
  console.log(`rate=${rate} p50 ${lat[200]!.toFixed(2)} p99 ${lat[396]!.toFixed(2)}`);
  await server.shutdown(); await orm.close();
}
