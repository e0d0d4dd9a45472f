import type { DescService } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";

/** A service and its implementation: what both transport paths serve (routes.ts builds the list). */
export interface ServiceEntry {
  service: DescService;
  // Each entry pairs a service with its own implementation; the list mixes services.
  impl: Partial<ServiceImpl<any>>;
}
