declare module 'dibop:plugin/log@0.1.0' {
  /**
   * Writes one line. `fields` is a JSON object (as text) of extra structured data; pass `{}`
   * for none. Lines beyond a per-call cap are dropped.
   */
  export function write(level: Level, message: string, fields: string): void;
  /**
   * Severity of a line.
   * # Variants
   * 
   * ## `"trace"`
   * 
   * ## `"debug"`
   * 
   * ## `"info"`
   * 
   * ## `"warn"`
   * 
   * ## `"error"`
   */
  export type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error';
}
