import { Migration20261123000000Foundation } from "./Migration20261123000000Foundation.ts";

/**
 * Every migration, in order. Listed explicitly (not discovered from the file
 * system) so the same list runs from `npm start`, `npm run migrate` and tests.
 */
export const migrations = [
  { name: "Migration20261123000000Foundation", class: Migration20261123000000Foundation },
];
