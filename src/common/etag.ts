import { EtagMismatchError } from "./errors.ts";

/** The etag of a resource at a row version (opaque to clients). */
export function etagOf(version: number): string {
  return `W/"${version}"`;
}

/**
 * Throws when the client sent an etag and it is not the current one. An empty
 * etag means "no check" (AIP-154).
 */
export function checkEtag(sent: string, current: { version: number; id: string }, resource: string): void {
  if (sent !== "" && sent !== etagOf(current.version)) {
    throw new EtagMismatchError(resource, current.id);
  }
}
