import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import { pathToString } from "@bufbuild/protobuf/reflect";
import { createValidator } from "@bufbuild/protovalidate";
import type { Interceptor } from "@connectrpc/connect";
import { InvalidArgumentError } from "../../common/errors.ts";

/**
 * Enforces the protovalidate rules written in the .proto files on every
 * request message, so handlers never re-validate by hand. Violations become
 * INVALID_ARGUMENT with one google.rpc.BadRequest field violation each.
 * After the rules, every string of the message (Struct keys and values
 * included) is checked for NUL bytes, which PostgreSQL cannot store or
 * compare: a filter or Struct carrying one is refused here instead of
 * breaking the database call. (Nesting is bounded earlier: the protobuf
 * decoder refuses messages nested more than 100 deep as INVALID_ARGUMENT.)
 */
export function validationInterceptor(): Interceptor {
  const validator = createValidator();
  const check = <Desc extends DescMessage>(schema: Desc, message: MessageShape<Desc>) => {
    const result = validator.validate(schema, message);
    if (result.kind === "invalid") {
      throw new InvalidArgumentError(
        result.violations.map((v) => ({ field: pathToString(v.field), description: v.message })),
        "VALIDATION_FAILED",
      );
    }
    if (result.kind === "error") {
      throw result.error;
    }
    const nul = pathOfNul(message);
    if (nul !== undefined) {
      throw new InvalidArgumentError([{ field: nul, description: "must not contain NUL (\\u0000) characters" }], "NUL_CHARACTER");
    }
  };
  return (next) => async (req) => {
    if (!req.stream) {
      check(req.method.input, req.message);
      return next(req);
    }
    const input = req.method.input;
    const messages = req.message;
    async function* validated() {
      for await (const message of messages) {
        check(input, message);
        yield message;
      }
    }
    return next({ ...req, message: validated() });
  };
}

/**
 * The path of the first string (or object key) containing U+0000 in a
 * decoded message, walked without recursion; undefined when there is none.
 */
function pathOfNul(message: object): string | undefined {
  const stack: { value: unknown; path: string }[] = [{ value: message, path: "" }];
  const join = (path: string, key: string) => (path ? `${path}.${key}` : key);
  while (stack.length > 0) {
    const { value, path } = stack.pop()!;
    if (typeof value === "string") {
      if (value.includes("\u0000")) return path;
    } else if (Array.isArray(value)) {
      value.forEach((item, i) => stack.push({ value: item, path: `${path}[${i}]` }));
    } else if (value !== null && typeof value === "object" && !(value instanceof Uint8Array)) {
      const record = value as Record<string, unknown>;
      if (typeof record.case === "string" && "value" in record && Object.keys(record).length === 2) {
        // A oneof: its case names the field.
        stack.push({ value: record.value, path: join(path, record.case) });
        continue;
      }
      for (const [key, item] of Object.entries(record)) {
        if (key === "$typeName" || key === "$unknown") continue;
        if (key.includes("\u0000")) return join(path, JSON.stringify(key));
        stack.push({ value: item, path: join(path, key) });
      }
    }
  }
  return undefined;
}
