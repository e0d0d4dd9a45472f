import { CredentialTypeSchema, type CredentialType } from "../../gen/agentplatform/v1/credential_pb.js";
import { enumCodec } from "../common/enum-codec.ts";

/** How credential enums are stored. */
export const credentialType = enumCodec<CredentialType>(CredentialTypeSchema, "CREDENTIAL_TYPE");
