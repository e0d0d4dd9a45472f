import { Ajv, type AnySchemaObject, type ValidateFunction } from "ajv";
import { Ajv2019 } from "ajv/dist/2019.js";
import { Ajv2020 } from "ajv/dist/2020.js";
import type { FieldViolation } from "./errors.ts";

// Tool parameters come from MCP tool definitions and OpenAI function schemas
// (2020-12), and from older tooling (draft-07). Each dialect has its own Ajv
// class; one instance each, because compiling the meta-schema is the
// expensive part. `addUsedSchema: false`: two tools may carry the same `$id`,
// and a schema's `$id` must not become a name the next schema can refer to.
const options = { strict: false, allErrors: false, validateSchema: true, addUsedSchema: false } as const;
const DIALECTS = {
  "draft-07": { ajv: new Ajv(options), uri: "http://json-schema.org/draft-07/schema#" },
  "2019-09": { ajv: new Ajv2019(options), uri: "https://json-schema.org/draft/2019-09/schema" },
  "2020-12": { ajv: new Ajv2020(options), uri: "https://json-schema.org/draft/2020-12/schema" },
};
type Dialect = keyof typeof DIALECTS;

/** The dialect a `$schema` names (either scheme, with or without the empty fragment); 2020-12 when absent. */
function dialectOf($schema: unknown): Dialect | undefined {
  if ($schema === undefined) return "2020-12";
  if (typeof $schema !== "string") return undefined;
  const m = /^https?:\/\/json-schema\.org\/(draft-07\/schema|draft\/2019-09\/schema|draft\/2020-12\/schema)#?$/.exec($schema);
  if (!m) return undefined;
  return m[1] === "draft-07/schema" ? "draft-07" : m[1] === "draft/2019-09/schema" ? "2019-09" : "2020-12";
}

// Compiled validators by the schema's JSON text, least recently used first.
// Bounded: every request may carry a new schema.
const CACHE_SIZE = 500;
const compiled = new Map<string, { ajv: Ajv; schema: AnySchemaObject; validate: ValidateFunction }>();

/**
 * Compiles `schema` once (by its JSON text) with the Ajv of its dialect;
 * throws what Ajv throws for a schema that does not compile.
 */
export function compileSchema(schema: Record<string, unknown>): ValidateFunction {
  const key = JSON.stringify(schema);
  const hit = compiled.get(key);
  if (hit) {
    compiled.delete(key);
    compiled.set(key, hit);
    return hit.validate;
  }
  const dialect = dialectOf(schema.$schema);
  if (!dialect) throw new Error(`unknown $schema ${JSON.stringify(schema.$schema)}`);
  const { ajv, uri } = DIALECTS[dialect];
  // Ajv finds the meta-schema by its exact URI; the spelling was checked above.
  const own: AnySchemaObject = { ...schema, $schema: uri };
  const validate = ajv.compile(own);
  compiled.set(key, { ajv, schema: own, validate });
  if (compiled.size > CACHE_SIZE) {
    const [oldest, evicted] = compiled.entries().next().value!;
    compiled.delete(oldest);
    // Ajv keeps every compiled schema object in its own cache too.
    evicted.ajv.removeSchema(evicted.schema);
  }
  return validate;
}

/**
 * Checks that `schema` is a JSON Schema describing an object, as function
 * parameters must be (OpenAI tools, MCP), in draft-07, 2019-09 or 2020-12
 * (by its `$schema`; 2020-12 when it names none), and that it compiles: its
 * `$ref`s resolve. Returns the violations, if any.
 */
export function objectSchemaViolations(schema: Record<string, unknown>, field: string): FieldViolation[] {
  const dialect = dialectOf(schema.$schema);
  if (!dialect) {
    return [
      {
        field,
        description: `unknown $schema ${JSON.stringify(schema.$schema)}: use draft-07, 2019-09 or 2020-12 (${Object.values(DIALECTS)
          .map((d) => d.uri)
          .join(", ")})`,
      },
    ];
  }
  const { ajv, uri } = DIALECTS[dialect];
  if (!ajv.validateSchema({ ...schema, $schema: uri })) {
    const first = ajv.errors?.[0];
    const where = first?.instancePath ? ` at ${first.instancePath}` : "";
    return [{ field, description: `not a valid JSON Schema (${dialect})${where}: ${first?.message ?? "invalid"}` }];
  }
  if (schema.type !== "object") {
    return [{ field, description: 'must be a JSON Schema of an object: set "type": "object"' }];
  }
  try {
    compileSchema(schema);
  } catch (err) {
    return [{ field, description: `not a usable JSON Schema (${dialect}): ${err instanceof Error ? err.message : String(err)}` }];
  }
  return [];
}
