import type { EntityManager } from "@mikro-orm/postgresql";
import { FailedPreconditionError, InvalidArgumentError } from "../common/errors.ts";
import { tenantOf } from "../db/tenant.ts";
import { TenantFeatureToggle } from "./feature-toggle.entity.ts";

/** A feature toggle the platform knows. */
export interface ToggleDefinition {
  name: string;
  /** Its value for tenants without an override. */
  defaultEnabled: boolean;
  /** What it controls. */
  description: string;
}

/** Every feature toggle; an operator can set only these. */
export const FEATURE_TOGGLES: readonly ToggleDefinition[] = [
  {
    name: "executions.enabled",
    defaultEnabled: true,
    description:
      "ExecuteAgent and StreamExecuteAgent start runs; when off they answer FAILED_PRECONDITION (reason FEATURE_DISABLED)",
  },
  {
    name: "executions.streaming",
    defaultEnabled: true,
    description: "StreamExecuteAgent starts runs; when off it answers FAILED_PRECONDITION (reason FEATURE_DISABLED)",
  },
];

/** Name of a known toggle. */
export type ToggleName = "executions.enabled" | "executions.streaming";

/** A toggle's value for the tenant. */
export interface ToggleState extends ToggleDefinition {
  enabled: boolean;
  /** The operator's setting, when there is one. */
  override: TenantFeatureToggle | undefined;
}

function definitionOf(name: string): ToggleDefinition {
  const definition = FEATURE_TOGGLES.find((t) => t.name === name);
  if (!definition) {
    throw new InvalidArgumentError(
      [{ field: "name", description: `unknown feature toggle; known toggles are ${FEATURE_TOGGLES.map((t) => t.name).join(", ")}` }],
      "UNKNOWN_FEATURE_TOGGLE",
    );
  }
  return definition;
}

function stateOf(definition: ToggleDefinition, override: TenantFeatureToggle | undefined): ToggleState {
  return { ...definition, enabled: override?.enabled ?? definition.defaultEnabled, override };
}

/** Every toggle with its value for the EntityManager's tenant. */
export async function toggleStates(em: EntityManager): Promise<ToggleState[]> {
  const overrides = await em.find(TenantFeatureToggle, {});
  return FEATURE_TOGGLES.map((d) => stateOf(d, overrides.find((o) => o.name === d.name)));
}

/** Whether a toggle is on for the tenant (read from the database: a change holds at once, on every instance). */
export async function featureEnabled(em: EntityManager, name: ToggleName): Promise<boolean> {
  const override = await em.findOne(TenantFeatureToggle, { name });
  return override?.enabled ?? definitionOf(name).defaultEnabled;
}

/** Throws FAILED_PRECONDITION (reason FEATURE_DISABLED) when a toggle is off for the tenant. */
export async function requireFeature(em: EntityManager, name: ToggleName): Promise<void> {
  if (await featureEnabled(em, name)) return;
  throw new FailedPreconditionError(`the feature ${JSON.stringify(name)} is disabled for this tenant`, "FEATURE_DISABLED", [
    {
      type: "FEATURE_DISABLED",
      subject: `tenants/${tenantOf(em)}/features/${name}`,
      description: "a platform operator turns it on with TenantService.SetFeatureToggle",
    },
  ]);
}

/** Sets a toggle for the tenant, or drops its override (`enabled` undefined) so the default applies. */
export async function setToggle(em: EntityManager, name: string, enabled: boolean | undefined, actor: string): Promise<ToggleState> {
  const definition = definitionOf(name);
  if (enabled === undefined) {
    await em.nativeDelete(TenantFeatureToggle, { name });
    return stateOf(definition, undefined);
  }
  const row = await em.upsert(
    TenantFeatureToggle,
    { tenantId: tenantOf(em), name, enabled, actor, updateTime: new Date() } as TenantFeatureToggle,
    { onConflictFields: ["tenantId", "name"] },
  );
  return stateOf(definition, row);
}
