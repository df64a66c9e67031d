// Types for scripts/test-prerequisites.mjs (plain Node, so it runs before the build), for the test helpers.
export interface Prerequisite {
  readonly need: string;
  readonly pkg: string;
  readonly for: string;
}
export declare const PREREQUISITES: readonly Prerequisite[];
export declare function present(need: string, path?: string): boolean;
export declare function missing(needs?: readonly string[], path?: string): Prerequisite[];
export declare function installCommand(rows: readonly Prerequisite[]): string;
export declare function describeMissing(rows: readonly Prerequisite[]): string;
