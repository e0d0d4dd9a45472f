import { createRemoteJWKSet, errors as joseErrors, jwtVerify, SignJWT, type JWTPayload, type JWTVerifyGetKey } from "jose";
import { InvalidArgumentError, PermissionDeniedError, UnauthenticatedError } from "../common/errors.ts";
import { OPERATOR_ROLE, ROLES, type Principal, type Role } from "./principal.ts";

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
// Verified tokens are remembered this long at most (never past their exp)…
const VERIFIED_TTL_MS = 60_000;
// …and this many at most, the oldest forgotten first.
const MAX_VERIFIED = 10_000;

/**
 * Checks a bearer token and picks the tenant; throws UNAUTHENTICATED or
 * PERMISSION_DENIED. `requestTenant` is the `tenant_id` field of a request to
 * a method operators may call (undefined for every other method): a token
 * with the operator role acts on that tenant; for a tenant member it picks
 * the tenant as x-tenant-id does, and must be granted it.
 */
export type Authenticate = (token: string, tenantHeader: string | null, requestTenant?: string) => Promise<Principal>;

/** Authenticate, and the same answer without verifying for a token verified a moment ago. */
export interface Authenticator extends Authenticate {
  /**
   * The principal of a token this authenticator verified a moment ago (the
   * byte-identical token, still in its cache), picking the tenant as
   * `authenticate` does; undefined for any other token and whenever
   * `authenticate` would refuse. Synchronous: for decisions taken before a
   * call is read (the rate limit's early admission).
   */
  known(token: string, tenantHeader: string | null): Principal | undefined;
}

/** The token of an `authorization: Bearer <token>` header, or undefined. */
export function bearerTokenOf(header: string | null | undefined): string | undefined {
  return header?.match(/^Bearer\s+(\S+)\s*$/i)?.[1];
}

/** Builds the verifier; algorithms are pinned to what the key kind allows. */
export function createAuthenticator(config: TokenConfig): Authenticator {
  const { verify, known } = verifierFor(config);
  const authenticate: Authenticate = async (token, tenantHeader, requestTenant) => {
    const payload = await verify(token);
    return principalFrom(payload, tenantHeader, requestTenant);
  };
  return Object.assign(authenticate, {
    known(token: string, tenantHeader: string | null): Principal | undefined {
      const payload = known(token);
      if (!payload) return undefined;
      try {
        return principalFrom(payload, tenantHeader);
      } catch {
        return undefined;
      }
    },
  });
}

interface Verifier {
  verify(token: string): Promise<JWTPayload>;
  /** The payload of `token` if it was verified a moment ago, else undefined. */
  known(token: string): JWTPayload | undefined;
}

function verifierFor(config: TokenConfig): Verifier {
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
  // A client sends the same token with every call: the byte-identical token
  // (signature included) verified a moment ago skips the signature check,
  // which makes every call cheaper, and a refused call (rate limit) about as
  // cheap as it can be. An entry ends at the token's exp (the clock tolerance
  // is left to a full verification) or after VERIFIED_TTL_MS.
  const verified = new Map<string, { payload: JWTPayload; until: number }>();
  const known = (token: string) => {
    const hit = verified.get(token);
    return hit && hit.until > Date.now() ? hit.payload : undefined;
  };
  const verify = async (token: string) => {
    const hit = known(token);
    if (hit) return hit;
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, key as Uint8Array, { ...common, algorithms }));
    } catch (cause) {
      verified.delete(token);
      throw new UnauthenticatedError(describeJoseError(cause));
    }
    const until = Math.min(Date.now() + VERIFIED_TTL_MS, (payload.exp ?? 0) * 1000);
    verified.delete(token);
    if (verified.size >= MAX_VERIFIED) verified.delete(verified.keys().next().value!);
    verified.set(token, { payload, until });
    return payload;
  };
  return { verify, known };
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

function principalFrom(payload: JWTPayload, tenantHeader: string | null, requestTenant?: string): Principal {
  const subject = payload.sub;
  if (typeof subject !== "string" || subject === "") {
    throw new UnauthenticatedError("token has no subject");
  }
  const operator = Array.isArray(payload.roles) && payload.roles.includes(OPERATOR_ROLE);
  if (operator && requestTenant !== undefined) {
    if (!TENANT_PATTERN.test(requestTenant)) {
      throw new InvalidArgumentError(
        [{ field: "tenant_id", description: "an operator names the tenant it acts on: a tenant id is required" }],
        "TENANT_ID_REQUIRED",
      );
    }
    return { subject, tenantId: requestTenant, role: undefined, operator: true };
  }
  if (operator && payload.tenant_id === undefined && payload.tenant_ids === undefined) {
    throw new PermissionDeniedError(
      "an operator token reaches only the tenant settings (TenantService), naming the tenant in tenant_id",
      "OPERATOR_NOT_IN_TENANT",
    );
  }
  if (requestTenant) {
    if (tenantHeader && tenantHeader !== requestTenant) {
      throw new PermissionDeniedError("x-tenant-id and the request's tenant_id name different tenants", "TENANT_MISMATCH");
    }
    tenantHeader = requestTenant;
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
  /** Tenant ids; one becomes `tenant_id`, several `tenant_ids`; none (an operator token) neither. */
  tenants: string[];
  /** Roles within those tenants, or `operator` (the platform operator, outside any tenant). */
  roles: (Role | typeof OPERATOR_ROLE)[];
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
    options.tenants.length === 0
      ? {}
      : options.tenants.length === 1
        ? { tenant_id: options.tenants[0] }
        : { tenant_ids: options.tenants };
  let jwt = new SignJWT({ ...claims, roles: options.roles })
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setSubject(options.subject)
    .setIssuedAt()
    .setExpirationTime(options.ttl);
  if (options.issuer) jwt = jwt.setIssuer(options.issuer);
  if (options.audience) jwt = jwt.setAudience(options.audience);
  return jwt.sign(secret);
}
