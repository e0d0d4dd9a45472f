import type { DescEnum } from "@bufbuild/protobuf";

/**
 * Stores a protobuf enum as its value name without the enum prefix
 * ("ACTIVE" for AGENT_STATE_ACTIVE): readable in SQL, stable if numbers
 * were ever reordered.
 */
export interface EnumCodec<E extends number> {
  /** The stored name of a value; throws for UNSPECIFIED or an unknown number. */
  toDb(value: E): string;
  /** The value of a stored name. */
  fromDb(name: string): E;
}

/** A codec for `desc`, whose values are named `<prefix>_<NAME>`. */
export function enumCodec<E extends number>(desc: DescEnum, prefix: string): EnumCodec<E> {
  const byNumber = new Map<number, string>();
  const byName = new Map<string, number>();
  for (const v of desc.values) {
    const name = v.name.slice(prefix.length + 1);
    byNumber.set(v.number, name);
    byName.set(name, v.number);
  }
  return {
    toDb(value) {
      const name = byNumber.get(value);
      if (name === undefined || value === 0) throw new Error(`${desc.typeName}: no stored name for ${value}`);
      return name;
    },
    fromDb(name) {
      const value = byName.get(name);
      if (value === undefined) throw new Error(`${desc.typeName}: unknown stored name ${name}`);
      return value as E;
    },
  };
}
