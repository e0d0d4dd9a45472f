import type { ServiceImpl } from "@connectrpc/connect";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { CredentialType } from "../../gen/agentplatform/v1/credential_pb.js";
import { CreateCredentialRequestSchema, CredentialService } from "../../gen/agentplatform/v1/credential_service_pb.js";
import { emOf, principalOf } from "../call-context.ts";
import { checkEtag } from "../common/etag.ts";
import { InvalidArgumentError, type FieldViolation } from "../common/errors.ts";
import { maskPaths } from "../common/field-mask.ts";
import { pageSizeOf, type PageTokens } from "../common/page-token.ts";
import { tenantOf } from "../db/tenant.ts";
import { idempotentCreate } from "../idempotency/idempotency.ts";
import type { Quotas } from "../tenants/quotas.ts";
import { credentialType } from "./codecs.ts";
import { toCredentialMessage } from "./credential.mapper.ts";
import { CredentialRepository } from "./credential.repository.ts";
import type { Keyring } from "./keyring.ts";
import { fingerprintRequest } from "./request-fingerprint.ts";
import { secretViolations } from "./secret.ts";

/** What the credential handlers need besides the request. */
export interface CredentialDeps {
  pageTokens: PageTokens;
  /** The key-encryption keys; the primary wraps new data keys. */
  keyring: Keyring;
  /** Credentials that are not revoked are bounded per tenant: creates check it. */
  quotas: Quotas;
}

const UPDATABLE = ["name", "description", "expire_time"] as const;
const DEFAULT_REWRAP_BATCH = 100;

/**
 * CredentialService over the request's EntityManager. Secrets are write-only:
 * requests carry them in, responses and errors carry metadata and a masked
 * hint only, and nothing here logs a request.
 */
export function credentialHandler(deps: CredentialDeps): ServiceImpl<typeof CredentialService> {
  const repoOf = (em: ReturnType<typeof emOf>) => new CredentialRepository(em, deps.keyring);

  return {
    async createCredential(req, ctx) {
      const input = req.credential!;
      const secret = req.secret!;
      const violations: FieldViolation[] = [
        ...(input.name === "" ? [{ field: "credential.name", description: "is required" }] : []),
        ...(input.type === CredentialType.UNSPECIFIED ? [{ field: "credential.type", description: "is required" }] : []),
        ...secretViolations(input.type, secret, "secret"),
      ];
      if (violations.length > 0) throw new InvalidArgumentError(violations);
      const creator = principalOf(ctx).subject;
      return idempotentCreate(emOf(ctx), {
        requestId: req.requestId,
        method: "CreateCredential",
        schema: CreateCredentialRequestSchema,
        request: req.requestId ? fingerprintRequest(req, deps.keyring) : req,
        replay: async (em, id) => ({ credential: toCredentialMessage(await repoOf(em).get(id)) }),
        create: async (tx) => {
          await deps.quotas.reserve(tx, "credentials");
          const created = await repoOf(tx).create(
            {
              name: input.name,
              description: input.description,
              type: credentialType.toDb(input.type),
              expireTime: dateOf(input.expireTime),
              creator,
            },
            secret,
          );
          return { id: created.id, result: { credential: toCredentialMessage(created) } };
        },
      });
    },

    async getCredential(req, ctx) {
      return { credential: toCredentialMessage(await repoOf(emOf(ctx)).get(req.credentialId)) };
    },

    async listCredentials(req, ctx) {
      const em = emOf(ctx);
      const limit = pageSizeOf(req.pageSize);
      const type = req.type === CredentialType.UNSPECIFIED ? "" : credentialType.toDb(req.type);
      const query = { rpc: "ListCredentials", type, state: req.state };
      const cursor = deps.pageTokens.decode(tenantOf(em), query, req.pageToken);
      const now = new Date();
      const rows = await repoOf(em).list({ limit: limit + 1, afterName: cursor?.[0] as string | undefined, type, state: req.state, now });
      const { page, nextPageToken } = deps.pageTokens.nextPage(tenantOf(em), query, rows, limit, (last) => [last.name]);
      return { credentials: page.map((c) => toCredentialMessage(c, now)), nextPageToken };
    },

    async updateCredential(req, ctx) {
      const paths = maskPaths(req.updateMask, UPDATABLE);
      const input = req.credential!;
      if (paths.has("name") && input.name === "") {
        throw new InvalidArgumentError([{ field: "credential.name", description: "must not be empty" }]);
      }
      const repo = repoOf(emOf(ctx));
      const credential = await repo.get(req.credentialId);
      checkEtag(req.etag, credential, "credential");
      if (paths.has("name")) credential.name = input.name;
      if (paths.has("description")) credential.description = input.description;
      if (paths.has("expire_time")) credential.expireTime = dateOf(input.expireTime);
      await repo.save(credential);
      return { credential: toCredentialMessage(credential) };
    },

    async rotateCredential(req, ctx) {
      const repo = repoOf(emOf(ctx));
      const credential = await repo.getWithSecret(req.credentialId);
      checkEtag(req.etag, credential, "credential");
      const violations = secretViolations(credentialType.fromDb(credential.type), req.secret!, "secret");
      if (violations.length > 0) throw new InvalidArgumentError(violations);
      await repo.rotate(credential, req.secret!);
      return { credential: toCredentialMessage(credential) };
    },

    async revokeCredential(req, ctx) {
      const repo = repoOf(emOf(ctx));
      const credential = await repo.getWithSecret(req.credentialId);
      await repo.revoke(credential);
      return { credential: toCredentialMessage(credential) };
    },

    async deleteCredential(req, ctx) {
      await emOf(ctx).transactional(async (tx) => {
        const repo = repoOf(tx);
        await repo.delete(await repo.get(req.credentialId), req.force);
      });
      return {};
    },

    async rewrapCredentials(req, ctx) {
      const progress = await repoOf(emOf(ctx)).rewrapBatch(req.batchSize || DEFAULT_REWRAP_BATCH);
      return { ...progress, primaryKeyId: deps.keyring.primary.id };
    },
  };
}

function dateOf(ts: Timestamp | undefined): Date | null {
  return ts ? timestampDate(ts) : null;
}
