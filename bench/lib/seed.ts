import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AgentType } from "../../gen/agentplatform/v1/agent_pb.js";
import { AgentService } from "../../gen/agentplatform/v1/agent_service_pb.js";
import { CredentialType } from "../../gen/agentplatform/v1/credential_pb.js";
import { CredentialService } from "../../gen/agentplatform/v1/credential_service_pb.js";
import { ExecutionService } from "../../gen/agentplatform/v1/execution_service_pb.js";
import { ToolService } from "../../gen/agentplatform/v1/tool_service_pb.js";
import { tokenFor } from "./token.ts";

/** What the rows read: per tenant its token and ids; all strings, so it travels as JSON to the load process. */
export interface Seed {
  tenants: SeededTenant[];
  /** A ListExecutions page_token of the first tenant, `deepPage` pages in. */
  deepPageToken: string;
  /** Which page deepPageToken opens (page size 50). */
  deepPage: number;
  /** GetExecutionStats range: the seeding day, as ISO strings. */
  statsFrom: string;
  statsTo: string;
}

/** One seeded tenant. */
export interface SeededTenant {
  token: string;
  agentIds: string[];
  toolIds: string[];
  credentialIds: string[];
  /** An agent of the built-in echo template, for ExecuteAgent. */
  echoAgentId: string;
}

/** How much to seed. */
export interface SeedSize {
  tenants: number;
  agentsPerTenant: number;
  toolsPerTenant: number;
  /** Executions of the first tenant (others get 20 each). */
  executions: number;
}

const TAGS = ["support", "sales", "billing", "triage", "internal", "beta", "eu", "us"];
const CONCURRENCY = 16;

/**
 * Seeds through the API, 16 calls at a time: per tenant tools, credentials,
 * agents with 2–5 tools, 2–3 tags and 1–2 credentials (every fourth one with
 * a second version), an echo agent and its executions.
 */
export async function seed(url: string, runId: string, size: SeedSize, log: (line: string) => void): Promise<Seed> {
  const tenants = await Promise.all(
    Array.from({ length: size.tenants }, async (_, t) => {
      const token = await tokenFor(`bench-${runId}-${t}`);
      const transport = createGrpcTransport({
        baseUrl: url,
        interceptors: [(next) => (req) => (req.header.set("authorization", `Bearer ${token}`), next(req))],
      });
      return {
        token,
        agents: createClient(AgentService, transport),
        tools: createClient(ToolService, transport),
        credentials: createClient(CredentialService, transport),
        executions: createClient(ExecutionService, transport),
        seeded: { token, agentIds: [], toolIds: [], credentialIds: [], echoAgentId: "" } as SeededTenant,
      };
    }),
  );
  const started = performance.now();

  await pool(
    tenants.flatMap((t) => [
      ...Array.from({ length: size.toolsPerTenant }, (_, i) => async () => {
        const { tool } = await t.tools.createTool({ tool: { name: `tool-${i}`, description: `Bench tool ${i}: looks things up.` } });
        t.seeded.toolIds.push(tool!.id);
      }),
      ...Array.from({ length: 4 }, (_, i) => async () => {
        const { credential } = await t.credentials.createCredential({
          credential: { name: `key-${i}`, type: CredentialType.API_KEY },
          secret: { value: { case: "apiKey", value: { apiKey: `sk-bench-${runId}-${i}` } } },
        });
        t.seeded.credentialIds.push(credential!.id);
      }),
      async () => {
        const { agent } = await t.agents.createAgent({ agent: { name: "echo", role: "bench" }, templateId: "builtin-echo" });
        t.seeded.echoAgentId = agent!.id;
      },
    ]),
  );
  log(`seeded ${size.tenants * size.toolsPerTenant} tools and ${size.tenants * 4} credentials`);

  await pool(
    tenants.flatMap((t) =>
      Array.from({ length: size.agentsPerTenant }, (_, i) => async () => {
        const tools = t.seeded.toolIds;
        const nTools = 2 + (i % 4);
        const { agent } = await t.agents.createAgent({
          agent: {
            name: `agent-${i}`,
            role: "support triage",
            description: `Bench agent ${i}: answers questions about orders and routes the rest.`,
            agentType: AgentType.CUSTOM,
            tags: [TAGS[i % TAGS.length]!, TAGS[(i + 3) % TAGS.length]!, ...(i % 2 ? [TAGS[(i + 5) % TAGS.length]!] : [])],
            toolIds: Array.from({ length: nTools }, (_, k) => tools[(i + k * 7) % tools.length]!),
            credentialIds: t.seeded.credentialIds.slice(0, 1 + (i % 2)),
            systemPrompt: "You are a careful support agent. Answer briefly.",
          },
        });
        t.seeded.agentIds.push(agent!.id);
        if (i % 4 === 0) {
          await t.agents.updateAgent({
            agentId: agent!.id,
            agent: { systemPrompt: "You are a careful support agent. Answer briefly and cite the order id." },
            updateMask: { paths: ["system_prompt"] },
            changeNote: "bench: second version",
          });
        }
      }),
    ),
  );
  log(`seeded ${size.tenants * size.agentsPerTenant} agents`);

  const from = new Date();
  await pool(
    tenants.flatMap((t, n) =>
      Array.from({ length: n === 0 ? size.executions : 20 }, (_, i) => async () => {
        await t.executions.executeAgent({ input: { agentId: t.seeded.echoAgentId, prompt: `hello bench ${i}` } });
      }),
    ),
  );
  const to = new Date(Date.now() + 86_400_000);

  // Walk the first tenant's executions to a deep page.
  const first = tenants[0]!;
  let pageToken = "";
  let page = 1;
  const deepest = Math.max(2, Math.floor(size.executions / 50) - 1);
  while (page < deepest) {
    const res = await first.executions.listExecutions({ pageSize: 50, pageToken });
    if (!res.nextPageToken) break;
    pageToken = res.nextPageToken;
    page++;
  }
  log(`seeded ${size.executions + 20 * (size.tenants - 1)} executions; deep page ${page}; ${((performance.now() - started) / 1000).toFixed(1)} s`);
  return {
    tenants: tenants.map((t) => t.seeded),
    deepPageToken: pageToken,
    deepPage: page,
    statsFrom: new Date(from.getTime() - 3_600_000).toISOString(),
    statsTo: to.toISOString(),
  };
}

/** Runs the tasks, CONCURRENCY at a time; the first failure fails the seed. */
async function pool(tasks: (() => Promise<void>)[]): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(CONCURRENCY, tasks.length) }, async () => {
      while (next < tasks.length) await tasks[next++]!();
    }),
  );
}

