import type { DescField, DescMessage, DescOneof } from "@bufbuild/protobuf";
import { isFieldError } from "@bufbuild/protobuf/reflect";
import type { FieldViolation } from "./errors.ts";

/*
 * protobuf-es says which field a decode error is about in three ways: a
 * FieldError (wrong type, oneof set twice), "message T: key K is unknown",
 * and "enum E: V" (an unknown enum name, with no field at all). A client
 * needs the path from the request message, as protovalidate's violations
 * give it ("agent.agent_type"): this finds it in the request's descriptors.
 */

const UNKNOWN_KEY = /^cannot decode message (\S+) from JSON: key "(.*)" is unknown$/s;
const UNKNOWN_ENUM = /^cannot decode enum (\S+) from JSON: (.*)$/s;

/**
 * The field violation a protobuf-es decode error (or an error caused by one)
 * describes, located in `input`; undefined when the error names no field (a
 * JSON syntax error, the nesting limit, every binary error) or the field it
 * names occurs at more than one place in the request.
 */
export function decodeErrorViolation(err: unknown, input: DescMessage): FieldViolation | undefined {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 4; e = e.cause, depth++) {
    if (isFieldError(e)) {
      const member: DescField | DescOneof = e.field();
      return only(pathsOf(input, (m) => (m.typeName === member.parent.typeName ? [member.name] : [])), e.message);
    }
    const key = UNKNOWN_KEY.exec(e.message);
    if (key) {
      const [, typeName, name] = key;
      return only(
        pathsOf(input, (m) => (m.typeName === typeName ? [name!.slice(0, 100)] : [])),
        "unknown field: this API refuses field names it does not know",
      );
    }
    const enumValue = UNKNOWN_ENUM.exec(e.message);
    if (enumValue) {
      const [, typeName, value] = enumValue;
      return only(
        pathsOf(input, (m) => m.fields.filter((f) => f.enum?.typeName === typeName).map((f) => f.name)),
        `unknown ${typeName} value ${value!.slice(0, 100)}`,
      );
    }
  }
  return undefined;
}

function only(paths: string[], description: string): FieldViolation | undefined {
  return paths.length === 1 ? { field: paths[0]!, description } : undefined;
}

/**
 * Every path from `root` to a member that `leaves` names in a message of the
 * request. Well-known types (Struct, Timestamp…) are leaves: their JSON is
 * not field by field. A type already on the path is not entered again.
 */
function pathsOf(root: DescMessage, leaves: (m: DescMessage) => string[]): string[] {
  const found: string[] = [];
  const walk = (m: DescMessage, prefix: string, onPath: Set<string>) => {
    for (const leaf of leaves(m)) found.push(prefix + leaf);
    for (const f of m.fields) {
      const child = f.message;
      if (!child || child.typeName.startsWith("google.protobuf.") || onPath.has(child.typeName)) continue;
      walk(child, `${prefix}${f.name}.`, new Set(onPath).add(child.typeName));
    }
  };
  walk(root, "", new Set([root.typeName]));
  return found;
}
