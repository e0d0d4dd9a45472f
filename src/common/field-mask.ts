import type { FieldMask } from "@bufbuild/protobuf/wkt";
import { InvalidArgumentError } from "./errors.ts";

/**
 * The paths an update may touch. An absent or empty mask means every
 * updatable field; a path outside `updatable` is INVALID_ARGUMENT, so an
 * attempt to change an immutable field (id, create_time…) is refused rather
 * than silently ignored.
 */
export function maskPaths<P extends string>(
  mask: FieldMask | undefined,
  updatable: readonly P[],
  field = "update_mask",
): Set<P> {
  const paths = mask?.paths ?? [];
  if (paths.length === 0) {
    return new Set(updatable);
  }
  const bad = paths.filter((p) => !(updatable as readonly string[]).includes(p));
  if (bad.length > 0) {
    throw new InvalidArgumentError(
      bad.map((p) => ({
        field: `${field}.paths`,
        description: `"${p}" cannot be updated; updatable fields are ${updatable.join(", ")}`,
      })),
    );
  }
  return new Set(paths as P[]);
}
