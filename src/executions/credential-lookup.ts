import type { JsonObject } from "@bufbuild/protobuf";
import type { EntityManager } from "@mikro-orm/postgresql";
import { AgentCredential } from "../bindings/agent-credential.entity.ts";
import { FailedPreconditionError } from "../common/errors.ts";
import type { Keyring } from "../credentials/keyring.ts";
import { resolveCredential, type ResolvedCredential } from "../credentials/resolve.ts";
import type { AppliedCredential } from "./adapters/adapter.ts";
import type { CredentialLookup } from "./start.ts";

/**
 * Picks the credential a run applies among those bound to the agent:
 * `config.credential_id` when set (it must be bound), else the only bound one.
 * It is decrypted for this one run and turned into what the adapter sends.
 */
export function credentialLookup(keyring: Keyring): CredentialLookup {
  return async (em: EntityManager, agentId: string, config: JsonObject) => {
    const bound = (await em.find(AgentCredential, { agentId }, { orderBy: { credentialId: "asc" } })).map((b) => b.credentialId);
    const chosen = typeof config.credential_id === "string" && config.credential_id !== "" ? config.credential_id : undefined;
    if (chosen !== undefined && !bound.includes(chosen)) {
      throw precondition("config.credential_id names a credential that is not bound to the agent", agentId);
    }
    if (chosen === undefined && bound.length > 1) {
      throw precondition("several credentials are bound to the agent; name one in config.credential_id", agentId);
    }
    const id = chosen ?? bound[0];
    return id === undefined ? undefined : applied(await resolveCredential(em, id, keyring));
  };
}

function applied(credential: ResolvedCredential): AppliedCredential | undefined {
  const secret = credential.secret.value;
  switch (secret.case) {
    case "apiKey":
      return { kind: "api_key", apiKey: secret.value.apiKey, headerName: secret.value.headerName };
    case "bearerToken":
      return { kind: "bearer", token: secret.value.token };
    case "basicAuth":
      return { kind: "basic", username: secret.value.username, password: secret.value.password };
    case "webhookSecret":
      return { kind: "webhook_secret", secret: secret.value.secret };
    case "oauth2":
      if (!secret.value.accessToken) {
        throw new FailedPreconditionError("the OAuth2 credential holds no access token", "CREDENTIAL_NO_ACCESS_TOKEN", [
          { type: "CREDENTIAL_NO_ACCESS_TOKEN", subject: `credentials/${credential.id}`, description: "rotate it with an access_token" },
        ]);
      }
      return { kind: "bearer", token: secret.value.accessToken };
    default:
      // CUSTOM values have no standard way onto a request.
      return undefined;
  }
}

function precondition(message: string, agentId: string): FailedPreconditionError {
  return new FailedPreconditionError(message, "CREDENTIAL_CHOICE", [
    { type: "CREDENTIAL_CHOICE", subject: `agents/${agentId}`, description: message },
  ]);
}
