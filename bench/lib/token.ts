import { SignJWT } from "jose";

/** The HS256 secret the bench's server is started with (JWT_SECRET). */
export const BENCH_SECRET = "bench-secret-0123456789abcdef0123456789abcdef";

/** A bearer token for one tenant, as the server's README describes them: HS256, tenant_id, roles. */
export function tokenFor(tenant: string, roles: string[] = ["admin"]): Promise<string> {
  return new SignJWT({ tenant_id: tenant, roles })
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setSubject("bench")
    .setIssuedAt()
    .setExpirationTime("4h")
    .sign(new TextEncoder().encode(BENCH_SECRET));
}
