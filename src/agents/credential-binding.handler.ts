import type { ServiceImpl } from "@connectrpc/connect";
import { AgentService } from "../../gen/agentplatform/v1/agent_service_pb.js";
import { emOf, principalOf } from "../call-context.ts";
import { toAgentMessage } from "./agent.mapper.ts";
import { AgentRepository } from "./agent.repository.ts";
import { bindCredentials, unbindCredentials } from "./credential-binding.ts";

/** BindCredentials and UnbindCredentials of AgentService (editor; the agent must be live and visible). */
export function credentialBindingHandler(): Partial<ServiceImpl<typeof AgentService>> {
  return {
    async bindCredentials(req, ctx) {
      return emOf(ctx).transactional(async (tx) => {
        const repo = new AgentRepository(tx, principalOf(ctx));
        const agent = await repo.getLive(req.agentId);
        await bindCredentials(tx, agent, req.credentialIds);
        return { agent: toAgentMessage(await repo.view(agent)) };
      });
    },

    async unbindCredentials(req, ctx) {
      return emOf(ctx).transactional(async (tx) => {
        const repo = new AgentRepository(tx, principalOf(ctx));
        const agent = await repo.getLive(req.agentId);
        await unbindCredentials(tx, agent, req.credentialIds);
        return { agent: toAgentMessage(await repo.view(agent)) };
      });
    },
  };
}
