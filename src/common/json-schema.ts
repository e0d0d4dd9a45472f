import { Ajv } from "ajv";
import type { FieldViolation } from "./errors.ts";

// One Ajv instance: compiling the meta-schema is the expensive part.
const ajv = new Ajv({ strict: false, allErrors: false, validateSchema: true });

/**
 * Checks that `schema` is a JSON Schema describing an object, as function
 * parameters must be (OpenAI tools, MCP). Returns the violations, if any.
 */
export function objectSchemaViolations(schema: Record<string, unknown>, field: string): FieldViolation[] {
  if (!ajv.validateSchema(schema)) {
    const first = ajv.errors?.[0];
    const where = first?.instancePath ? ` at ${first.instancePath}` : "";
    return [{ field, description: `not a valid JSON Schema${where}: ${first?.message ?? "invalid"}` }];
  }
  if (schema.type !== "object") {
    return [{ field, description: 'must be a JSON Schema of an object: set "type": "object"' }];
  }
  return [];
}
