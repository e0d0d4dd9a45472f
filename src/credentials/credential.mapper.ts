import { create } from "@bufbuild/protobuf";
import {
  CredentialSchema as CredentialMessageSchema,
  type Credential as CredentialMessage,
} from "../../gen/agentplatform/v1/credential_pb.js";
import { etagOf } from "../common/etag.ts";
import { toTimestamp } from "../common/time.ts";
import { credentialType } from "./codecs.ts";
import { stateOf } from "./credential-state.ts";
import type { Credential } from "./credential.entity.ts";

/** The API view of a credential: metadata and the masked hint, never the secret. */
export function toCredentialMessage(c: Credential, now = new Date()): CredentialMessage {
  return create(CredentialMessageSchema, {
    id: c.id,
    name: c.name,
    description: c.description,
    type: credentialType.fromDb(c.type),
    secretHint: c.secretHint,
    keyId: c.keyId ?? "",
    secretVersion: c.secretVersion,
    state: stateOf(c, now),
    expireTime: toTimestamp(c.expireTime),
    lastUsedTime: toTimestamp(c.lastUsedTime),
    creator: c.creator,
    createTime: toTimestamp(c.createTime),
    updateTime: toTimestamp(c.updateTime),
    etag: etagOf(c.version),
  });
}
