import { randomUUID } from "node:crypto";

/** A new server-generated resource id. */
export function newId(): string {
  return randomUUID();
}
