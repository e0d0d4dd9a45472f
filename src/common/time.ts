import { timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";

/** A Date as a protobuf Timestamp, or undefined for none. */
export function toTimestamp(date: Date | null | undefined): Timestamp | undefined {
  return date ? timestampFromDate(date) : undefined;
}
