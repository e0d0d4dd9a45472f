import { createRemoteJWKSet, errors as joseErrors, jwtVerify, SignJWT, type JWTPayload, type JWTVerifyGetKey } from "jose";
import { PermissionDeniedError, UnauthenticatedError } from "../common/errors.ts";
import { ROLES, type Principal, type Role } from "./principal.ts";

/** How tokens are verified. */
export interface TokenConfig {
  /** Shared secret for HS256 tokens. */
  secret?: Uint8Array;
  /** JWKS URL for RS256/ES256 tokens; takes the place of `secret`. */
  jwksUrl?: string;
  /** Required `iss`, when set. */
  issuer?: string;
  /** Required `aud`, when set. */
  audience?: string;
}

/** The secret `npm run token` signs with when no JWT_SECRET is configured. */
export const DEVELOPMENT_SECRET = "agent-platform-development-secret-do-not-use-in-production";

const TENANT_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const CLOCK_TOLERANCE_SECONDS = 30;

/** Checks a bearer token and picks the tenant; throws UNAUTHENTICATED or PERMISSION_DENIED. */
export type Authenticate = (token: string, tenantHeader: string | null) => Promise<Principal>;

/** Builds the verifier; algorithms are pinned to what the key kind allows. */
export function createAuthenticator(config: TokenConfig): Authenticate {
  const verify = verifierFor(config);
  return async (token, tenantHeader) => {
    const payload = await verify(token);
    return principalFrom(payload, tenantHeader);
  };
}

function verifierFor(config: TokenConfig): (token: string) => Promise<JWTPayload> {
  const common = {
    issuer: config.issuer,
    audience: config.audience,
    clockTolerance: CLOCK_TOLERANCE_SECONDS,
    requiredClaims: ["exp", "sub"],
  };
  let key: Uint8Array | JWTVerifyGetKey;
  let algorithms: string[];
  if (config.jwksUrl) {
    key = createRemoteJWKSet(new URL(config.jwksUrl));
    algorithms = ["RS256", "ES256"];
  } else if (config.secret) {
    key = config.secret;
    algorithms = ["HS256"];
  } else {
    throw new Error("token verification needs a secret or a JWKS URL");
  }
  return async (token) => {
    try {
      const { payload } = await jwtVerify(token, key as Uint8Array, { ...common, algorithms });
      return payload;
    } catch (cause) {
      throw new UnauthenticatedError(describeJoseError(cause));
    }
  };
}

// Says why a token was refused without echoing the token or key material.
function describeJoseError(cause: unknown): string {
  if (cause instanceof joseErrors.JWTExpired) return "token expired";
  if (cause instanceof joseErrors.JWTClaimValidationFailed) return `token claim "${cause.claim}" is invalid`;
  if (cause instanceof joseErrors.JOSEAlgNotAllowed) return "token algorithm not allowed";
  if (cause instanceof joseErrors.JWSSignatureVerificationFailed) return "token signature is invalid";
  if (cause instanceof joseErrors.JWKSNoMatchingKey) return "token key is unknown";
  return "token is invalid";
}

function principalFrom(payload: JWTPayload, tenantHeader: string | null): Principal {
  const subject = payload.sub;
  if (typeof subject !== "string" || subject === "") {
    throw new UnauthenticatedError("token has no subject");
  }
  const tenants = tenantsOf(payload);
  let tenantId: string;
  if (tenantHeader !== null && tenantHeader !== "") {
    if (!tenants.includes(tenantHeader)) {
      throw new PermissionDeniedError("the token does not grant access to that tenant", "TENANT_NOT_GRANTED");
    }
    tenantId = tenantHeader;
  } else if (tenants.length === 1) {
    tenantId = tenants[0]!;
  } else {
    throw new PermissionDeniedError("the token names several tenants; pick one with x-tenant-id", "TENANT_REQUIRED");
  }
  return { subject, tenantId, role: strongestRole(payload.roles) };
}

function tenantsOf(payload: JWTPayload): string[] {
  const single = payload.tenant_id;
  const list = payload.tenant_ids;
  const tenants =
    typeof single === "string" ? [single] : Array.isArray(list) && list.every((t) => typeof t === "string") ? list : [];
  if (tenants.length === 0 || !tenants.every((t) => TENANT_PATTERN.test(t))) {
    throw new UnauthenticatedError("token has no valid tenant_id claim");
  }
  return tenants;
}

function strongestRole(claim: unknown): Role | undefined {
  if (!Array.isArray(claim)) return undefined;
  let best: Role | undefined;
  for (const role of ROLES) {
    if (claim.includes(role)) best = role;
  }
  return best;
}

/** What `mintToken` puts in a token. */
export interface MintOptions {
  /** Tenant ids; one becomes `tenant_id`, several `tenant_ids`. */
  tenants: string[];
  /** Roles within those tenants. */
  roles: Role[];
  /** Subject. */
  subject: string;
  /** Lifetime, e.g. "1h" (jose duration syntax). */
  ttl: string;
  /** Issuer and audience, when the server checks them. */
  issuer?: string;
  audience?: string;
}

/** Signs an HS256 token (development and tests). */
export async function mintToken(secret: Uint8Array, options: MintOptions): Promise<string> {
  const claims: JWTPayload =
    options.tenants.length === 1 ? { tenant_id: options.tenants[0] } : { tenant_ids: options.tenants };
  let jwt = new SignJWT({ ...claims, roles: options.roles })
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setSubject(options.subject)
    .setIssuedAt()
    .setExpirationTime(options.ttl);
  if (options.issuer) jwt = jwt.setIssuer(options.issuer);
  if (options.audience) jwt = jwt.setAudience(options.audience);
  return jwt.sign(secret);
}
