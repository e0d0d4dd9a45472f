import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import { pathToString } from "@bufbuild/protobuf/reflect";
import { createValidator } from "@bufbuild/protovalidate";
import type { Interceptor } from "@connectrpc/connect";
import { InvalidArgumentError } from "../common/errors.ts";

/**
 * Enforces the protovalidate rules written in the .proto files on every
 * request message, so handlers never re-validate by hand. Violations become
 * INVALID_ARGUMENT with one google.rpc.BadRequest field violation each.
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
